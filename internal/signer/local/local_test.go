package local

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/openedx-keyd/keyd/internal/signer"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// record is the lifecycle record of version v for the tests.
func record(v int, alg signer.Algorithm) signer.Record {
	created := t0.Add(time.Duration(v) * time.Hour)
	return signer.Record{
		Version: v, Algorithm: alg, CreatedAt: created, ActivatesAt: created.Add(24 * time.Hour),
		Schedule: "0 0 1 * *", PropagationDelay: 24 * time.Hour, RetireAfter: time.Hour + 2*time.Minute,
		Actor: "test", Reason: "test key",
	}
}

func newBackend(t *testing.T, dir string) *Backend {
	t.Helper()
	b, err := New(dir)
	if err != nil {
		t.Fatalf("New(%s): %v", dir, err)
	}
	return b
}

func mustCreate(t *testing.T, b *Backend, v int, alg signer.Algorithm) signer.Key {
	t.Helper()
	k, err := b.Create(context.Background(), record(v, alg))
	if err != nil {
		t.Fatalf("Create(v%d %s): %v", v, alg, err)
	}
	return k
}

func versions(t *testing.T, b *Backend) []int {
	t.Helper()
	keys, err := b.Keys(context.Background())
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	vs := []int{}
	for _, k := range keys {
		vs = append(vs, k.Version)
	}
	return vs
}

// signJWS assembles a token with version k through the backend.
func signJWS(t *testing.T, b signer.Backend, k signer.Key, payload string) (string, error) {
	t.Helper()
	kid, err := signer.KID(k.Public)
	if err != nil {
		t.Fatalf("KID: %v", err)
	}
	return signer.Assemble(context.Background(), b, signer.Credential{}, signer.NewSigningKey(k.Version, k.Algorithm, kid), []byte(payload))
}

// verifyJWS checks token with go-jose against pub and returns its payload.
func verifyJWS(t *testing.T, token string, alg signer.Algorithm, pub any) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		t.Fatalf("Verify with the public key: %v", err)
	}
	return string(payload)
}

func TestSignVerifyEveryAlgorithm(t *testing.T) {
	tests := []struct {
		alg     signer.Algorithm
		checkPK func(t *testing.T, pub any)
	}{
		{signer.RS512, checkRSA2048},
		{signer.RS256, checkRSA2048},
		{signer.ES256, func(t *testing.T, pub any) {
			if k, ok := pub.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
				t.Errorf("public key is %T, want a P-256 *ecdsa.PublicKey", pub)
			}
		}},
		{signer.EdDSA, func(t *testing.T, pub any) {
			if _, ok := pub.(ed25519.PublicKey); !ok {
				t.Errorf("public key is %T, want ed25519.PublicKey", pub)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.alg), func(t *testing.T) {
			b := newBackend(t, t.TempDir())
			k := mustCreate(t, b, 1, tt.alg)
			tt.checkPK(t, k.Public)
			if !reflect.DeepEqual(k.Record, record(1, tt.alg)) || !k.HasRecord {
				t.Errorf("Create returned record %+v (HasRecord %v), want %+v", k.Record, k.HasRecord, record(1, tt.alg))
			}

			const payload = `{"sub":"alice","aud":"ecommerce"}`
			token, err := signJWS(t, b, k, payload)
			if err != nil {
				t.Fatalf("Assemble: %v", err)
			}
			if got := verifyJWS(t, token, tt.alg, k.Public); got != payload {
				t.Errorf("payload = %s, want %s", got, payload)
			}
			jws, _ := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(tt.alg)})
			h := jws.Signatures[0].Protected
			wantKID, _ := signer.KID(k.Public)
			if h.Algorithm != string(tt.alg) || h.KeyID != wantKID || h.ExtraHeaders["typ"] != "JWT" {
				t.Errorf("header alg=%s kid=%s typ=%v, want %s %s JWT", h.Algorithm, h.KeyID, h.ExtraHeaders["typ"], tt.alg, wantKID)
			}

			// The key signs only with its own algorithm.
			other := signer.RS256
			if tt.alg == signer.RS256 {
				other = signer.ES256
			}
			if _, err := b.Sign(context.Background(), signer.Credential{}, 1, other, []byte("x")); err == nil {
				t.Errorf("Sign with %s using a %s key succeeded", other, tt.alg)
			}
		})
	}
}

func checkRSA2048(t *testing.T, pub any) {
	t.Helper()
	if k, ok := pub.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
		t.Errorf("public key is %T, want a 2048-bit *rsa.PublicKey", pub)
	}
}

func TestFileModes(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	mustCreate(t, b, 1, signer.EdDSA)
	if err := b.PinSigning(context.Background(), 1); err != nil {
		t.Fatalf("PinSigning: %v", err)
	}
	if err := b.SaveIntent(context.Background(), signer.Intent{After: 1, Reason: "r", Actor: "a", At: t0}); err != nil {
		t.Fatalf("SaveIntent: %v", err)
	}
	want := map[string]os.FileMode{
		"keys":                     0o700 | os.ModeDir,
		"keys/00000001.json":       0o600,
		"keys/latest_version":      0o600,
		"keys/min_signing_version": 0o600,
		"emergency-intent.json":    0o600,
	}
	for name, mode := range want {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("stat %s: %v", name, err)
			continue
		}
		if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != mode {
			t.Errorf("%s has mode %v, want %v", name, got, mode)
		}
	}
	// Every file in the key dir is private, temporary files included.
	ents, err := os.ReadDir(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("keys/%s has mode %v, readable by others", e.Name(), fi.Mode())
		}
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file keys/%s left behind", e.Name())
		}
	}
}

func TestCreateWrongVersion(t *testing.T) {
	b := newBackend(t, t.TempDir())
	tests := []struct {
		version int
		wantErr error
	}{
		{2, signer.ErrAlreadyRotated}, // nothing yet: only 1 may be created
		{0, signer.ErrAlreadyRotated},
		{1, nil},
		{1, signer.ErrAlreadyRotated}, // another writer got there first
		{3, signer.ErrAlreadyRotated}, // a gap
		{2, nil},
	}
	for _, tt := range tests {
		_, err := b.Create(context.Background(), record(tt.version, signer.EdDSA))
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("Create(v%d) = %v, want %v", tt.version, err, tt.wantErr)
		}
	}
	if got, want := versions(t, b), []int{1, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("versions = %v, want %v", got, want)
	}
}

func TestConcurrentCreateOneWinner(t *testing.T) {
	dir := t.TempDir()
	backends := []*Backend{newBackend(t, dir), newBackend(t, dir)}
	for v := 1; v <= 3; v++ {
		const perBackend = 4
		var wg sync.WaitGroup
		errs := make(chan error, len(backends)*perBackend)
		for _, b := range backends {
			for range perBackend {
				wg.Go(func() {
					_, err := b.Create(context.Background(), record(v, signer.EdDSA))
					errs <- err
				})
			}
		}
		wg.Wait()
		close(errs)
		won := 0
		for err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, signer.ErrAlreadyRotated):
				t.Errorf("Create(v%d) lost with %v, want ErrAlreadyRotated", v, err)
			}
		}
		if won != 1 {
			t.Fatalf("Create(v%d): %d winners, want exactly 1", v, won)
		}
	}
	for i, b := range backends {
		if got, want := versions(t, b), []int{1, 2, 3}; !reflect.DeepEqual(got, want) {
			t.Errorf("backend %d sees versions %v, want %v", i, got, want)
		}
	}
}

func TestPinSigningRefusesOlderVersions(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	k1 := mustCreate(t, b, 1, signer.ES256)
	k2 := mustCreate(t, b, 2, signer.ES256)
	if _, err := signJWS(t, b, k1, "{}"); err != nil {
		t.Fatalf("sign with v1 before the pin: %v", err)
	}
	if err := b.PinSigning(context.Background(), 2); err != nil {
		t.Fatalf("PinSigning(2): %v", err)
	}
	// Lowering the pin is a no-op, never an un-pin.
	if err := b.PinSigning(context.Background(), 1); err != nil {
		t.Fatalf("PinSigning(1): %v", err)
	}
	restarted := newBackend(t, dir)
	for name, be := range map[string]*Backend{"same backend": b, "restarted": restarted} {
		if _, err := signJWS(t, be, k1, "{}"); !errors.Is(err, signer.ErrNoKey) {
			t.Errorf("%s: sign with v1 after PinSigning(2) = %v, want ErrNoKey", name, err)
		}
		tok, err := signJWS(t, be, k2, `{"v":2}`)
		if err != nil {
			t.Fatalf("%s: sign with v2: %v", name, err)
		}
		verifyJWS(t, tok, signer.ES256, k2.Public)
	}

	// A pin raised by another process on the same data dir is seen at the next Keys.
	other := newBackend(t, dir)
	mustCreate(t, b, 3, signer.ES256)
	if err := b.PinSigning(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	versions(t, other)
	if _, err := signJWS(t, other, k2, "{}"); !errors.Is(err, signer.ErrNoKey) {
		t.Errorf("other process: sign with v2 after PinSigning(3) = %v, want ErrNoKey", err)
	}
}

func TestDestroyBelow(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	keys := map[int]signer.Key{}
	for v := 1; v <= 3; v++ {
		keys[v] = mustCreate(t, b, v, signer.EdDSA)
	}
	if err := b.DestroyBelow(context.Background(), 3); err != nil {
		t.Fatalf("DestroyBelow(3): %v", err)
	}
	for v := 1; v <= 3; v++ {
		_, err := os.Stat(b.keyPath(v))
		if exists := err == nil; exists != (v == 3) {
			t.Errorf("key file of v%d exists=%v after DestroyBelow(3)", v, exists)
		}
	}
	if got, want := versions(t, b), []int{3}; !reflect.DeepEqual(got, want) {
		t.Errorf("Keys after DestroyBelow(3) = %v, want %v", got, want)
	}
	if _, err := signJWS(t, b, keys[1], "{}"); !errors.Is(err, signer.ErrNoKey) {
		t.Errorf("sign with destroyed v1 = %v, want ErrNoKey", err)
	}
	if err := b.DestroyBelow(context.Background(), 3); err != nil {
		t.Errorf("DestroyBelow again: %v", err)
	}

	// Destroy everything: the version numbers still never come back.
	if err := b.DestroyBelow(context.Background(), 4); err != nil {
		t.Fatalf("DestroyBelow(4): %v", err)
	}
	if got := versions(t, b); len(got) != 0 {
		t.Errorf("Keys after DestroyBelow(4) = %v, want none", got)
	}
	for name, be := range map[string]*Backend{"same backend": b, "restarted": newBackend(t, dir)} {
		for _, v := range []int{2, 3} {
			if _, err := be.Create(context.Background(), record(v, signer.EdDSA)); !errors.Is(err, signer.ErrAlreadyRotated) {
				t.Errorf("%s: Create(v%d) after destroying it = %v, want ErrAlreadyRotated", name, v, err)
			}
		}
	}
	// A bootstrap over the empty store (every key lost) takes the number
	// above every one ever used, never 1 again.
	if k, err := b.Create(context.Background(), record(1, signer.EdDSA)); err != nil || k.Version != 4 {
		t.Errorf("Create(v1) after destroying everything = v%d, %v; want v4", k.Version, err)
	}
	if _, err := b.Create(context.Background(), record(1, signer.EdDSA)); !errors.Is(err, signer.ErrAlreadyRotated) {
		t.Errorf("a second Create(v1) = %v, want ErrAlreadyRotated", err)
	}
	if got, want := versions(t, newBackend(t, dir)), []int{4}; !reflect.DeepEqual(got, want) {
		t.Errorf("versions = %v, want %v", got, want)
	}
}

func TestCorruptKeyFile(t *testing.T) {
	// A valid EC key with a record claiming RSA, and a public-only JWK.
	ecFile := func(t *testing.T, dir string) []byte {
		b := newBackend(t, filepath.Join(dir, "src"))
		mustCreate(t, b, 1, signer.ES256)
		raw, err := os.ReadFile(b.keyPath(1))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	edit := func(raw []byte, f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			panic(err)
		}
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	tests := []struct {
		name    string
		content func(t *testing.T, dir string) []byte
	}{
		{"empty", func(*testing.T, string) []byte { return nil }},
		{"garbage", func(*testing.T, string) []byte { return []byte("\x00\x01not json") }},
		{"truncated", func(t *testing.T, dir string) []byte { raw := ecFile(t, dir); return raw[:len(raw)/2] }},
		{"no private key", func(t *testing.T, dir string) []byte {
			return edit(ecFile(t, dir), func(m map[string]any) { delete(m, "private_jwk") })
		}},
		{"public key only", func(t *testing.T, dir string) []byte {
			return edit(ecFile(t, dir), func(m map[string]any) { delete(m["private_jwk"].(map[string]any), "d") })
		}},
		{"symmetric key", func(t *testing.T, dir string) []byte {
			return edit(ecFile(t, dir), func(m map[string]any) { m["private_jwk"] = map[string]any{"kty": "oct", "k": "c2VjcmV0"} })
		}},
		{"record of another version", func(t *testing.T, dir string) []byte {
			return edit(ecFile(t, dir), func(m map[string]any) { m["record"].(map[string]any)["version"] = 7 })
		}},
		{"record algorithm does not match the key", func(t *testing.T, dir string) []byte {
			return edit(ecFile(t, dir), func(m map[string]any) { m["record"].(map[string]any)["algorithm"] = "RS512" })
		}},
		{"unknown algorithm", func(t *testing.T, dir string) []byte {
			return edit(ecFile(t, dir), func(m map[string]any) { m["record"].(map[string]any)["algorithm"] = "HS256" })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			b := newBackend(t, dir)
			if err := os.WriteFile(b.keyPath(1), tt.content(t, dir), 0o600); err != nil {
				t.Fatal(err)
			}
			// Sign first, while nothing is cached: it must refuse, not panic.
			sig, err := b.Sign(context.Background(), signer.Credential{}, 1, signer.RS512, []byte("x"))
			if err == nil {
				t.Errorf("Sign with a corrupt key file = %x, want an error", sig)
			}
			// Keys sets the file aside and says so (Problems), never fails.
			keys, err := b.Keys(context.Background())
			if err != nil || len(keys) != 0 {
				t.Fatalf("Keys = %d keys, %v; want none and no error (the bad file set aside)", len(keys), err)
			}
			if msg := strings.Join(b.Problems(), "\n"); !strings.Contains(msg, "corrupt") || !strings.Contains(msg, b.keyPath(1)) {
				t.Errorf("Problems %q do not say that %s is corrupt", msg, b.keyPath(1))
			}
		})
	}
}

func TestIntentRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := newBackend(t, dir)
	if in, err := b.LoadIntent(ctx); in != nil || err != nil {
		t.Fatalf("LoadIntent on a new dir = %v, %v; want nil, nil", in, err)
	}
	want := signer.Intent{After: 3, Reason: "key leaked", Actor: "role:admin", At: t0.Add(90 * time.Minute)}
	if err := b.SaveIntent(ctx, want); err != nil {
		t.Fatalf("SaveIntent: %v", err)
	}
	for name, be := range map[string]*Backend{"same backend": b, "restarted": newBackend(t, dir)} {
		got, err := be.LoadIntent(ctx)
		if err != nil || got == nil || !reflect.DeepEqual(*got, want) {
			t.Errorf("%s: LoadIntent = %+v, %v; want %+v", name, got, err, want)
		}
	}
	if err := b.ClearIntent(ctx); err != nil {
		t.Fatalf("ClearIntent: %v", err)
	}
	if in, err := newBackend(t, dir).LoadIntent(ctx); in != nil || err != nil {
		t.Errorf("LoadIntent after ClearIntent = %v, %v; want nil, nil", in, err)
	}
	if err := b.ClearIntent(ctx); err != nil {
		t.Errorf("ClearIntent twice: %v", err)
	}

	if err := os.WriteFile(b.intentPath(), []byte("{half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if in, err := b.LoadIntent(ctx); in != nil || err != nil {
		t.Errorf("LoadIntent of a corrupt file = %v, %v; want nil, nil (the file set aside)", in, err)
	}
	if msg := strings.Join(b.Problems(), "\n"); !strings.Contains(msg, "corrupt") || !strings.Contains(msg, "emergency-intent.json") {
		t.Errorf("Problems %q do not name the corrupt intent file", msg)
	}
}

func TestRestartSeesSameKeys(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	var created []signer.Key
	for v, alg := range []signer.Algorithm{signer.RS512, signer.ES256, signer.EdDSA} {
		created = append(created, mustCreate(t, b, v+1, alg))
	}
	restarted := newBackend(t, dir)
	got, err := restarted.Keys(context.Background())
	if err != nil {
		t.Fatalf("Keys after restart: %v", err)
	}
	if len(got) != len(created) {
		t.Fatalf("Keys after restart: %d keys, want %d", len(got), len(created))
	}
	for i, k := range got {
		want := created[i]
		if !reflect.DeepEqual(k.Record, want.Record) || !k.HasRecord {
			t.Errorf("v%d record after restart = %+v, want %+v", want.Version, k.Record, want.Record)
		}
		if !reflect.DeepEqual(k.Public, want.Public) {
			t.Errorf("v%d public key changed across the restart", want.Version)
		}
		gotKID, _ := signer.KID(k.Public)
		wantKID, _ := signer.KID(want.Public)
		if gotKID != wantKID {
			t.Errorf("v%d kid after restart = %s, want %s", want.Version, gotKID, wantKID)
		}
		tok, err := signJWS(t, restarted, k, `{"after":"restart"}`)
		if err != nil {
			t.Fatalf("sign with v%d after restart: %v", k.Version, err)
		}
		verifyJWS(t, tok, k.Algorithm, want.Public)
	}
	if b.Name() != "local" {
		t.Errorf("Name() = %q, want local", b.Name())
	}
}
