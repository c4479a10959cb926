// Package conformance is the one test suite every key backend must pass:
// the local backend and the Vault backend run the same checks. The
// lifecycle loop's run over each backend (with injected failures) is
// rotation's test, on the environments made here (Local, Vault).
package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Env is a fresh backend and a credential allowed to sign with it.
type Env struct {
	Backend signer.Backend
	Cred    signer.Credential
}

// Run checks the Backend contract. newEnv returns a fresh backend whose key
// has algorithm alg and no lifecycle record yet.
func Run(t *testing.T, alg signer.Algorithm, newEnv func(t *testing.T) Env) {
	t.Run("versions", func(t *testing.T) { testVersions(t, alg, newEnv(t)) })
	t.Run("pin and destroy", func(t *testing.T) { testPinDestroy(t, alg, newEnv(t)) })
	t.Run("intent", func(t *testing.T) { testIntent(t, newEnv(t)) })
}

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// record is the lifecycle record of version v made at t0 under an hourly
// schedule: the first version active at once, later ones 10 minutes on.
func record(v int, alg signer.Algorithm) signer.Record {
	rec := signer.Record{Version: v, Algorithm: alg, CreatedAt: t0, ActivatesAt: t0.Add(10 * time.Minute),
		Schedule: "@every 1h", PropagationDelay: 10 * time.Minute, RetireAfter: 7 * time.Minute}
	if v == 1 {
		rec.ActivatesAt = t0
	}
	return rec
}

func create(t *testing.T, b signer.Backend, alg signer.Algorithm, v int) signer.Key {
	t.Helper()
	k, err := b.Create(context.Background(), record(v, alg))
	if err != nil {
		t.Fatalf("create version %d: %v", v, err)
	}
	if k.Version != v {
		t.Fatalf("create version %d returned version %d", v, k.Version)
	}
	return k
}

// Signs checks that key k signs through e and the JWS verifies with its
// public key; it returns the backend's error when k does not sign.
func Signs(t *testing.T, e Env, alg signer.Algorithm, k signer.Key) error {
	t.Helper()
	kid, err := signer.KID(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.Assemble(context.Background(), e.Backend, e.Cred, signer.NewSigningKey(k.Version, alg, kid), []byte(`{"sub":"x"}`))
	if err != nil {
		return err
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatalf("version %d made an unparsable JWS: %v", k.Version, err)
	}
	if _, err := jws.Verify(k.Public); err != nil {
		t.Fatalf("version %d signature does not verify: %v", k.Version, err)
	}
	return nil
}

func testVersions(t *testing.T, alg signer.Algorithm, e Env) {
	ctx := context.Background()
	k1 := create(t, e.Backend, alg, 1)
	k2 := create(t, e.Backend, alg, 2)
	if _, err := e.Backend.Create(ctx, record(2, alg)); !errors.Is(err, signer.ErrAlreadyRotated) {
		t.Errorf("create version 2 again: err = %v, want ErrAlreadyRotated", err)
	}
	if _, err := e.Backend.Create(ctx, record(4, alg)); err == nil {
		t.Error("create version 4 after 2 succeeded")
	}
	keys, err := e.Backend.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Version != 1 || keys[1].Version != 2 || !keys[1].HasRecord {
		t.Fatalf("keys = %+v", keys)
	}
	if got, want := keys[1].Record.ActivatesAt, t0.Add(10*time.Minute); !got.Equal(want) || keys[1].Algorithm != alg {
		t.Errorf("record of version 2 not kept: %+v", keys[1].Record)
	}
	for _, k := range []signer.Key{k1, k2} {
		if err := Signs(t, e, alg, k); err != nil {
			t.Errorf("version %d: %v", k.Version, err)
		}
	}
}

func testPinDestroy(t *testing.T, alg signer.Algorithm, e Env) {
	ctx := context.Background()
	k1 := create(t, e.Backend, alg, 1)
	k2 := create(t, e.Backend, alg, 2)
	// The sign path uses a pending key from its activates_at on, before the
	// lifecycle loop raises the pin: a version above the pin signs.
	if err := e.Backend.PinSigning(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := Signs(t, e, alg, k2); err != nil {
		t.Errorf("version 2 while pinned to 1: %v", err)
	}
	if err := e.Backend.PinSigning(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := Signs(t, e, alg, k1); !errors.Is(err, signer.ErrNoKey) {
		t.Errorf("version 1 signs after the pin to 2: err = %v, want ErrNoKey", err)
	}
	if err := Signs(t, e, alg, k2); err != nil {
		t.Errorf("version 2 after the pin: %v", err)
	}
	if err := e.Backend.DestroyBelow(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := e.Backend.DestroyBelow(ctx, 2); err != nil {
		t.Errorf("destroy twice: %v", err)
	}
	keys, err := e.Backend.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0].Version != 2 {
		t.Fatalf("keys after destroy = %+v, %v", keys, err)
	}
	k3 := create(t, e.Backend, alg, 3) // numbering continues after a destroy
	if err := Signs(t, e, alg, k3); err != nil {
		t.Errorf("version 3: %v", err)
	}
}

func testIntent(t *testing.T, e Env) {
	ctx := context.Background()
	if in, err := e.Backend.LoadIntent(ctx); err != nil || in != nil {
		t.Fatalf("fresh backend intent = %+v, %v", in, err)
	}
	want := signer.Intent{After: 4, Reason: "key leaked", Actor: "role:admin", At: t0}
	if err := e.Backend.SaveIntent(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := e.Backend.LoadIntent(ctx)
	if err != nil || got == nil || got.After != 4 || got.Reason != want.Reason || got.Actor != want.Actor || !got.At.Equal(t0) {
		t.Fatalf("intent = %+v, %v", got, err)
	}
	if err := e.Backend.ClearIntent(ctx); err != nil {
		t.Fatal(err)
	}
	if in, err := e.Backend.LoadIntent(ctx); err != nil || in != nil {
		t.Fatalf("intent after clear = %+v, %v", in, err)
	}
}
