// Package vault is keyd's Vault backend: the signing key lives in Vault's
// transit engine and never leaves it, each signature is made with the
// caller's own Vault token, and lifecycle records, rotation claims and the
// emergency intent live in a KV v2 mount.
package vault

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
	"golang.org/x/sync/singleflight"

	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/policies"
)

// Config configures a Backend. Zero values take the defaults noted.
type Config struct {
	// Client is keyd's own client: its token (policy keyd-server) reads,
	// rotates, configures and trims the key and uses the KV mount. It never
	// signs; Sign and Authorize use clones carrying the caller's token.
	Client *api.Client
	// Mount is the transit mount (default "transit"), Key the transit key
	// (default "keyd-jwt"), KVMount the KV v2 mount (default "keyd").
	Mount, Key, KVMount string
	// Algorithm is keyd's configured algorithm. It is reported for a version
	// that has no lifecycle record when it fits the key type; otherwise the
	// type's default (RS512, ES256, EdDSA) is.
	Algorithm signer.Algorithm
	// CallerTimeout bounds the key read that tells, after a failed sign, a
	// version Vault refuses from an outage. Default 900ms.
	CallerTimeout time.Duration
	// SignTimeout bounds each Vault call made with a caller's token (a
	// transit sign, lookup-self, capabilities-self), retries through a
	// leader election included (see Router). Default 2s.
	SignTimeout time.Duration
	// Clock tells the time (default clock.Real): rotation claims carry it,
	// and the caches of callers' clients and roles expire by it.
	Clock clock.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Backend is the Vault transit backend. It implements signer.Backend and is
// safe for concurrent use.
type Backend struct {
	client        *api.Client
	mount, key    string
	kv            string
	alg           signer.Algorithm
	callerTimeout time.Duration
	signTimeout   time.Duration
	clock         clock.Clock
	log           *slog.Logger
	holder        string // names this replica in rotation claims

	mu      sync.Mutex
	records map[int]signer.Record // lifecycle records are immutable: cached for good

	clients     *cache[*api.Client]    // caller clients by token hash
	principals  *cache[auth.Principal] // positive Authorize results by role and token hash
	authFlights singleflight.Group     // one Vault check at a time per role and token hash
	batches     *batcher               // coalesces concurrent signs of one caller

	kvProblems sync.Map // malformed propagation entry path -> problem (Problems)
}

var _ signer.Backend = (*Backend)(nil)

// Defaults of Config.
const (
	DefaultMount         = "transit"
	DefaultKey           = "keyd-jwt"
	DefaultKVMount       = "keyd"
	DefaultCallerTimeout = 900 * time.Millisecond
	DefaultSignTimeout   = 2 * time.Second

	// claimTimeout is how old a rotation claim must be before another
	// replica may take it over (its holder is presumed dead).
	// It is judged on the replicas' clocks, so it is well above any clock
	// skew a deployment tolerates.
	claimTimeout = 5 * time.Minute
)

// New returns a Backend. It makes no Vault call; CheckCannotSign is the
// start-up check.
func New(cfg Config) (*Backend, error) {
	if cfg.Client == nil {
		return nil, errors.New("vault: no client")
	}
	mount := cmp.Or(strings.Trim(cfg.Mount, "/"), DefaultMount)
	key := cmp.Or(cfg.Key, DefaultKey)
	kv := cmp.Or(strings.Trim(cfg.KVMount, "/"), DefaultKVMount)
	// The names must be ones bootstrap can write policies for.
	if _, err := policies.Render(mount, key, kv); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if cfg.Algorithm != "" {
		if _, err := KeyType(cfg.Algorithm); err != nil {
			return nil, err
		}
	}
	b := &Backend{
		client:        cfg.Client,
		mount:         mount,
		key:           key,
		kv:            kv,
		alg:           cfg.Algorithm,
		callerTimeout: cfg.CallerTimeout,
		signTimeout:   cfg.SignTimeout,
		clock:         cmp.Or[clock.Clock](cfg.Clock, clock.Real{}),
		log:           cfg.Logger,
		holder:        holderID(),
		records:       make(map[int]signer.Record),
		clients:       newCache[*api.Client](1024),
		principals:    newCache[auth.Principal](1024),
		batches:       newBatcher(),
	}
	if b.callerTimeout <= 0 {
		b.callerTimeout = DefaultCallerTimeout
	}
	if b.signTimeout <= 0 {
		b.signTimeout = DefaultSignTimeout
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	return b, nil
}

func holderID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Name returns "vault".
func (b *Backend) Name() string { return "vault" }
