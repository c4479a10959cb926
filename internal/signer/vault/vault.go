// Package vault is keyd's Vault backend: the signing key lives in Vault's
// transit engine and never leaves it, each signature is made with the
// caller's own Vault token, and lifecycle records, rotation claims and the
// emergency intent live in a KV v2 mount.
package vault

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
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

func (b *Backend) keyPath() string  { return b.mount + "/keys/" + b.key }
func (b *Backend) signPath() string { return b.mount + "/sign/" + b.key }
func (b *Backend) kvPath(p string) string {
	return b.kv + "/data/" + p
}

// KeyType returns the transit key type an algorithm needs.
func KeyType(alg signer.Algorithm) (string, error) {
	switch alg {
	case signer.RS512, signer.RS256:
		return "rsa-2048", nil
	case signer.ES256:
		return "ecdsa-p256", nil
	case signer.EdDSA:
		return "ed25519", nil
	}
	return "", fmt.Errorf("vault: unsupported algorithm %q", alg)
}

// fits reports whether alg can sign with a transit key of type keyType.
func fits(alg signer.Algorithm, keyType string) bool {
	t, err := KeyType(alg)
	return err == nil && t == keyType
}

// keyInfo is what GET <mount>/keys/<key> says about the key.
type keyInfo struct {
	Type                 string                 `json:"type"`
	LatestVersion        int                    `json:"latest_version"`
	MinDecryptionVersion int                    `json:"min_decryption_version"`
	MinEncryptionVersion int                    `json:"min_encryption_version"`
	MinAvailableVersion  int                    `json:"min_available_version"`
	Exportable           bool                   `json:"exportable"`
	DeletionAllowed      bool                   `json:"deletion_allowed"`
	AllowPlaintextBackup bool                   `json:"allow_plaintext_backup"`
	Keys                 map[string]versionInfo `json:"-"`
}

type versionInfo struct {
	PublicKey    string    `json:"public_key"`
	CreationTime time.Time `json:"creation_time"`
}

// parseKeyInfo decodes the data of a key read (or of a rotate, which
// answers with the same document).
func parseKeyInfo(data map[string]any) (*keyInfo, error) {
	var ki keyInfo
	if err := decode(data, &ki); err != nil {
		return nil, fmt.Errorf("vault: decode key: %w", err)
	}
	switch ki.Type {
	case "rsa-2048", "ecdsa-p256", "ed25519":
	default:
		return nil, fmt.Errorf("vault: key type %q cannot sign JWTs (want rsa-2048, ecdsa-p256 or ed25519)", ki.Type)
	}
	if err := decode(data["keys"], &ki.Keys); err != nil {
		return nil, fmt.Errorf("vault: decode key versions: %w", err)
	}
	return &ki, nil
}

func (b *Backend) readKey(ctx context.Context) (*keyInfo, error) {
	sec, err := b.client.Logical().ReadWithContext(ctx, b.keyPath())
	if err != nil {
		return nil, wrap("read key "+b.keyPath(), err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("vault: key %s does not exist (run keyd bootstrap)", b.keyPath())
	}
	return parseKeyInfo(sec.Data)
}

// Keys lists the versions whose private material still exists, oldest
// first: those Vault has not trimmed (at or above min_available_version).
// A version below min_decryption_version but not yet trimmed (a trim that
// failed, or a crash between the two calls of DestroyBelow) is still
// listed, so the lifecycle destroys it again and records it. It costs one
// transit read once the lifecycle records are cached.
func (b *Backend) Keys(ctx context.Context) ([]signer.Key, error) {
	ki, err := b.readKey(ctx)
	if err != nil {
		return nil, err
	}
	var versions []int
	for s := range ki.Keys {
		v, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("vault: key version %q: %w", s, err)
		}
		if v >= ki.MinAvailableVersion {
			versions = append(versions, v)
		}
	}
	sort.Ints(versions)
	keys := make([]signer.Key, 0, len(versions))
	for _, v := range versions {
		k, err := b.keyVersion(ctx, ki, v)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// keyVersion assembles version v from the key document and its record.
func (b *Backend) keyVersion(ctx context.Context, ki *keyInfo, v int) (signer.Key, error) {
	vi, ok := ki.Keys[strconv.Itoa(v)]
	if !ok {
		return signer.Key{}, fmt.Errorf("%w: version %d of %s", signer.ErrNoKey, v, b.keyPath())
	}
	pub, err := parsePublic(ki.Type, vi.PublicKey)
	if err != nil {
		return signer.Key{}, fmt.Errorf("vault: version %d: %w", v, err)
	}
	rec, found, err := b.record(ctx, v)
	if err != nil {
		return signer.Key{}, err
	}
	if !found {
		// A crash between rotate and the record write: report what Vault
		// knows; the rotation rules decide what to do with it.
		rec = signer.Record{
			Version:     v,
			Algorithm:   b.defaultAlg(ki.Type),
			CreatedAt:   vi.CreationTime.UTC(),
			ActivatesAt: vi.CreationTime.UTC(),
		}
	}
	return signer.Key{Record: rec, Public: pub, HasRecord: found}, nil
}

func (b *Backend) defaultAlg(keyType string) signer.Algorithm {
	if fits(b.alg, keyType) {
		return b.alg
	}
	switch keyType {
	case "ecdsa-p256":
		return signer.ES256
	case "ed25519":
		return signer.EdDSA
	}
	return signer.RS512
}

// parsePublic parses a transit public key: PEM (PKIX) for RSA and ECDSA,
// raw base64 for Ed25519.
func parsePublic(keyType, s string) (crypto.PublicKey, error) {
	if keyType == "ed25519" {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, errors.New("malformed ed25519 public key")
		}
		return ed25519.PublicKey(raw), nil
	}
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("public key is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if keyType == "rsa-2048" && k.N.BitLen() == 2048 {
			return k, nil
		}
	case *ecdsa.PublicKey:
		if keyType == "ecdsa-p256" && k.Curve == elliptic.P256() {
			return k, nil
		}
	}
	return nil, fmt.Errorf("public key does not match key type %s", keyType)
}

// record returns the lifecycle record of version v, and whether it exists.
func (b *Backend) record(ctx context.Context, v int) (signer.Record, bool, error) {
	b.mu.Lock()
	rec, ok := b.records[v]
	b.mu.Unlock()
	if ok {
		return rec, true, nil
	}
	data, _, err := b.kvRead(ctx, recordPath(v))
	if err != nil || data == nil {
		return signer.Record{}, false, err
	}
	if err := decode(data, &rec); err != nil {
		return signer.Record{}, false, fmt.Errorf("vault: decode record %d: %w", v, err)
	}
	if rec.Version != v {
		return signer.Record{}, false, fmt.Errorf("vault: record %s holds version %d", recordPath(v), rec.Version)
	}
	b.remember(rec)
	return rec, true, nil
}

func (b *Backend) remember(rec signer.Record) {
	b.mu.Lock()
	b.records[rec.Version] = rec
	b.mu.Unlock()
}

func recordPath(v int) string { return "records/" + strconv.Itoa(v) }
func claimPath(v int) string  { return "locks/rotate-" + strconv.Itoa(v) }

// Create makes version rec.Version, exactly once across replicas.
//
// Version 1 is special: `keyd bootstrap` creates the transit key, whose
// first version is 1, so Create only writes the record of that existing
// version (ErrAlreadyRotated when the record already exists).
//
// For a later version the replica first claims locks/rotate-<v> in KV v2
// (check-and-set 0; a claim older than claimTimeout, 5 min, while the key
// has not moved is taken over), checks that Vault's latest version is still v-1, rotates, and
// writes the record of the new version (check-and-set 0). Should Vault's new
// version not be rec.Version (a presumed-dead claim holder rotated after
// all), the record and the returned Key carry Vault's number.
func (b *Backend) Create(ctx context.Context, rec signer.Record) (signer.Key, error) {
	if rec.Version < 1 {
		return signer.Key{}, fmt.Errorf("vault: cannot create version %d", rec.Version)
	}
	ki, err := b.readKey(ctx)
	if err != nil {
		return signer.Key{}, err
	}
	if !fits(rec.Algorithm, ki.Type) {
		return signer.Key{}, fmt.Errorf("vault: algorithm %q cannot use key %s of type %s (the algorithm belongs to the key)", rec.Algorithm, b.keyPath(), ki.Type)
	}
	// Vault's newest version must be the one just below rec.Version; for
	// version 1 it is version 1 itself, created by bootstrap.
	want := rec.Version - 1
	if rec.Version == 1 {
		want = 1
	}
	switch {
	case ki.LatestVersion > want:
		return signer.Key{}, fmt.Errorf("%w: vault's newest version is %d", signer.ErrAlreadyRotated, ki.LatestVersion)
	case ki.LatestVersion < want:
		return signer.Key{}, fmt.Errorf("vault: cannot create version %d: vault's newest version is %d", rec.Version, ki.LatestVersion)
	}
	if rec.Version == 1 {
		if err := b.writeRecord(ctx, rec); err != nil {
			return signer.Key{}, err
		}
		return b.keyVersion(ctx, ki, 1)
	}

	if err := b.claim(ctx, rec.Version); err != nil {
		return signer.Key{}, err
	}
	// Re-check under the claim: another replica may have finished first.
	if ki, err = b.readKey(ctx); err != nil {
		return signer.Key{}, err
	}
	if ki.LatestVersion != rec.Version-1 {
		return signer.Key{}, fmt.Errorf("%w: vault's newest version is %d", signer.ErrAlreadyRotated, ki.LatestVersion)
	}
	sec, err := b.client.Logical().WriteWithContext(ctx, b.keyPath()+"/rotate", nil)
	if err != nil {
		return signer.Key{}, wrap("rotate "+b.keyPath(), err)
	}
	if sec != nil && sec.Data != nil {
		ki, err = parseKeyInfo(sec.Data)
	} else {
		ki, err = b.readKey(ctx)
	}
	if err != nil {
		return signer.Key{}, err
	}
	if n := ki.LatestVersion; n != rec.Version {
		b.log.Warn("vault rotated to an unexpected version", "want", rec.Version, "got", n)
		rec.Version = n
	}
	if err := b.writeRecord(ctx, rec); err != nil {
		return signer.Key{}, err
	}
	return b.keyVersion(ctx, ki, rec.Version)
}

// WriteRecord stores the lifecycle record of a version Vault holds without
// one: the first key, made by keyd bootstrap, or a version whose record was
// lost to a crash between the transit rotate and the record write. The
// record is created once (check-and-set 0), so every replica then follows
// the same one; when another replica wrote it first, ErrAlreadyRotated.
func (b *Backend) WriteRecord(ctx context.Context, rec signer.Record) error {
	ki, err := b.readKey(ctx)
	if err != nil {
		return err
	}
	if _, ok := ki.Keys[strconv.Itoa(rec.Version)]; !ok {
		return fmt.Errorf("%w: version %d of %s", signer.ErrNoKey, rec.Version, b.keyPath())
	}
	if !fits(rec.Algorithm, ki.Type) {
		return fmt.Errorf("vault: algorithm %q cannot use key %s of type %s", rec.Algorithm, b.keyPath(), ki.Type)
	}
	return b.writeRecord(ctx, rec)
}

// writeRecord writes rec once (check-and-set 0).
func (b *Backend) writeRecord(ctx context.Context, rec signer.Record) error {
	data, err := encode(rec)
	if err != nil {
		return fmt.Errorf("vault: encode record: %w", err)
	}
	created, err := b.kvCreate(ctx, recordPath(rec.Version), data)
	if err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("%w: record of version %d exists", signer.ErrAlreadyRotated, rec.Version)
	}
	b.remember(rec)
	return nil
}

// claimEntry is the content of a rotation claim.
type claimEntry struct {
	Holder string    `json:"holder"`
	At     time.Time `json:"at"`
}

// claim makes this replica the one that creates version v, or returns
// ErrAlreadyRotated when another replica holds a live claim on it.
func (b *Backend) claim(ctx context.Context, v int) error {
	mine, err := encode(claimEntry{Holder: b.holder, At: b.clock.Now().UTC()})
	if err != nil {
		return fmt.Errorf("vault: encode claim: %w", err)
	}
	created, err := b.kvCreate(ctx, claimPath(v), mine)
	if err != nil || created {
		return err
	}
	data, kvVersion, err := b.kvRead(ctx, claimPath(v))
	if err != nil {
		return err
	}
	var theirs claimEntry
	if err := decode(data, &theirs); err != nil {
		return fmt.Errorf("vault: decode claim %d: %w", v, err)
	}
	if age := b.clock.Now().Sub(theirs.At); age < claimTimeout {
		return fmt.Errorf("%w: version %d is being created by %s", signer.ErrAlreadyRotated, v, theirs.Holder)
	}
	// The holder is presumed dead. Take over with check-and-set, so that
	// one replica at most does; the caller re-checks the key under the claim.
	_, err = b.client.Logical().WriteWithContext(ctx, b.kvPath(claimPath(v)), map[string]any{
		"data":    mine,
		"options": map[string]any{"cas": kvVersion},
	})
	if statusOf(err) == 400 { // check-and-set failed: another replica took it over first
		return fmt.Errorf("%w: lost the takeover of version %d's stale claim", signer.ErrAlreadyRotated, v)
	}
	if err != nil {
		return wrap("take over claim "+claimPath(v), err)
	}
	b.log.Warn("took over a stale rotation claim", "version", v, "holder", theirs.Holder, "claimed_at", theirs.At)
	return nil
}

// PinSigning raises min_encryption_version to v, so Vault itself refuses
// signatures with any older version. It never lowers it.
func (b *Backend) PinSigning(ctx context.Context, v int) error {
	ki, err := b.readKey(ctx)
	if err != nil {
		return err
	}
	if v > ki.LatestVersion {
		return fmt.Errorf("%w: cannot pin signing to version %d, newest is %d", signer.ErrNoKey, v, ki.LatestVersion)
	}
	if ki.MinEncryptionVersion >= v {
		return nil
	}
	return b.configure(ctx, map[string]any{"min_encryption_version": v})
}

// DestroyBelow raises min_decryption_version (and min_encryption_version
// with it, when lower) to v, then trims every version below v: their
// private material is gone from Vault.
func (b *Backend) DestroyBelow(ctx context.Context, v int) error {
	ki, err := b.readKey(ctx)
	if err != nil {
		return err
	}
	if v <= 1 {
		return nil
	}
	if v > ki.LatestVersion {
		return fmt.Errorf("%w: cannot destroy below version %d, newest is %d", signer.ErrNoKey, v, ki.LatestVersion)
	}
	params := map[string]any{}
	if ki.MinDecryptionVersion < v {
		params["min_decryption_version"] = v
	}
	if ki.MinEncryptionVersion < v {
		params["min_encryption_version"] = v
	}
	if len(params) > 0 {
		if err := b.configure(ctx, params); err != nil {
			return err
		}
	}
	if ki.MinAvailableVersion >= v {
		return nil
	}
	_, err = b.client.Logical().WriteWithContext(ctx, b.keyPath()+"/trim", map[string]any{"min_available_version": v})
	return wrap("trim "+b.keyPath(), err)
}

func (b *Backend) configure(ctx context.Context, params map[string]any) error {
	_, err := b.client.Logical().WriteWithContext(ctx, b.keyPath()+"/config", params)
	return wrap("configure "+b.keyPath(), err)
}

// isUnavailable reports whether err means Vault did not answer usefully:
// no HTTP answer at all (refused, reset, timeout), 5xx (down, sealed,
// standby without a leader) or 429.
func isUnavailable(err error) bool {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode >= 500 || re.StatusCode == 429
	}
	return true
}

func statusOf(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// wrap names the failed operation, and marks an unreachable Vault with
// signer.ErrUnavailable. A nil err stays nil.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case isUnavailable(err):
		return Explain(fmt.Errorf("%w: vault %s: %w", signer.ErrUnavailable, op, err))
	}
	return Explain(fmt.Errorf("vault: %s: %w", op, err))
}
