package vault

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
	"github.com/openedx-keyd/keyd/policies"
)

// Every test shares one Vault dev server. Each test bootstraps its own
// mount, key and KV names, but the policy names are global: tests here do
// not run in parallel, and a test creates its tokens after its bootstrap.
func TestMain(m *testing.M) { vaulttest.Main(m) }

// env is one bootstrapped keyd setup on the shared Vault.
type env struct {
	srv            *vaulttest.Server
	root           *api.Client
	mount, key, kv string
	alg            signer.Algorithm
	serverToken    string   // keyd-server
	backend        *Backend // keyd's own backend, with the keyd-server token
}

func setup(t *testing.T, alg signer.Algorithm) *env {
	t.Helper()
	srv := vaulttest.StartShared(t)
	e := &env{
		srv:   srv,
		root:  srv.Client(t, srv.RootToken),
		mount: vaulttest.UniqueName("transit"),
		key:   vaulttest.UniqueName("jwt"),
		kv:    vaulttest.UniqueName("kv"),
		alg:   alg,
	}
	if _, err := Bootstrap(context.Background(), e.root, e.bootstrapOptions()); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	e.serverToken = srv.Token(t, policies.Server)
	e.backend = e.newBackend(t, srv.Client(t, e.serverToken), nil)
	return e
}

func (e *env) bootstrapOptions() BootstrapOptions {
	return BootstrapOptions{Algorithm: e.alg, Mount: e.mount, Key: e.key, KVMount: e.kv}
}

func (e *env) newBackend(t *testing.T, c *api.Client, clk clock.Clock) *Backend {
	t.Helper()
	b, err := New(Config{Client: c, Mount: e.mount, Key: e.key, KVMount: e.kv, Algorithm: e.alg, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// record is the lifecycle record of a new version, active at once.
func (e *env) record(v int) signer.Record {
	now := time.Now().UTC().Truncate(time.Second)
	return signer.Record{Version: v, Algorithm: e.alg, CreatedAt: now, ActivatesAt: now, RetireAfter: time.Hour + 2*time.Minute}
}

// create makes versions up to n (version 1 is bootstrap's).
func (e *env) create(t *testing.T, n int) []signer.Key {
	t.Helper()
	ctx := context.Background()
	keys, err := e.backend.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	from := 1
	if n := len(keys); n > 0 && keys[n-1].HasRecord {
		from = keys[n-1].Version + 1
	}
	for v := from; v <= n; v++ {
		if _, err := e.backend.Create(ctx, e.record(v)); err != nil {
			t.Fatalf("create version %d: %v", v, err)
		}
	}
	keys, err = e.backend.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// keyInfo reads the transit key with the root token.
func (e *env) keyInfo(t *testing.T) *keyInfo {
	t.Helper()
	sec, err := e.root.Logical().Read(e.mount + "/keys/" + e.key)
	if err != nil || sec == nil {
		t.Fatalf("read key: %v", err)
	}
	ki, err := parseKeyInfo(sec.Data)
	if err != nil {
		t.Fatal(err)
	}
	return ki
}

const payload = `{"sub":"alice","grant_type":"password"}`

// signJWT makes a compact JWS with b and the caller's token.
func signJWT(b *Backend, token string, k signer.Key) (string, error) {
	kid, err := signer.KID(k.Public)
	if err != nil {
		return "", err
	}
	sk := signer.NewSigningKey(k.Version, k.Algorithm, kid)
	return signer.Assemble(context.Background(), b, signer.Credential{Token: token}, sk, []byte(payload))
}

// verifyJWT checks tok with go-jose and the public key from Keys.
func verifyJWT(t *testing.T, tok string, k signer.Key) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(k.Algorithm)})
	if err != nil {
		t.Fatalf("parse %s token: %v", k.Algorithm, err)
	}
	got, err := jws.Verify(k.Public)
	if err != nil {
		t.Fatalf("%s signature does not verify: %v", k.Algorithm, err)
	}
	if string(got) != payload {
		t.Fatalf("payload %q, want %q", got, payload)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

// wantStatus checks that Vault answered err with the HTTP status.
func wantStatus(t *testing.T, what string, err error, status int) {
	t.Helper()
	if got := statusOf(err); got != status {
		t.Fatalf("%s: got status %d (%v), want %d", what, got, err, status)
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// waitUntil polls cond (every 10ms) until it holds, and fails the test with
// what (and the last detail, when set) when it does not within timeout:
// these tests wait for a condition, not for a fixed time.
func waitUntil(t *testing.T, timeout time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s (not within %v)", what(), timeout)
		}
		<-tick.C
	}
}
