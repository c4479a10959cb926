// Package conformance is the one test suite every key backend must pass:
// the local backend and the Vault backend run the same checks, including the
// lifecycle loop with injected failures.
package conformance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/robfig/cron/v3"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/rotation"
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
	t.Run("lifecycle with failures", func(t *testing.T) { testLifecycleWithFailures(t, alg, newEnv(t)) })
}

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func rules(t *testing.T) rotation.Rules {
	s, err := cron.ParseStandard("@every 1h")
	if err != nil {
		t.Fatal(err)
	}
	return rotation.Rules{Schedule: s, ScheduleSpec: "@every 1h", PropagationDelay: 10 * time.Minute, RetireAfter: 7 * time.Minute}
}

func create(t *testing.T, b signer.Backend, alg signer.Algorithm, v int) signer.Key {
	t.Helper()
	k, err := b.Create(context.Background(), rotation.NewRecord(v, alg, rules(t), t0, false))
	if err != nil {
		t.Fatalf("create version %d: %v", v, err)
	}
	if k.Version != v {
		t.Fatalf("create version %d returned version %d", v, k.Version)
	}
	return k
}

// signs checks that version v signs and the JWS verifies with its public key.
func signs(t *testing.T, e Env, alg signer.Algorithm, k signer.Key) error {
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
	if _, err := e.Backend.Create(ctx, rotation.NewRecord(2, alg, rules(t), t0, false)); !errors.Is(err, signer.ErrAlreadyRotated) {
		t.Errorf("create version 2 again: err = %v, want ErrAlreadyRotated", err)
	}
	if _, err := e.Backend.Create(ctx, rotation.NewRecord(4, alg, rules(t), t0, false)); err == nil {
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
		if err := signs(t, e, alg, k); err != nil {
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
	if err := signs(t, e, alg, k2); err != nil {
		t.Errorf("version 2 while pinned to 1: %v", err)
	}
	if err := e.Backend.PinSigning(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := signs(t, e, alg, k1); !errors.Is(err, signer.ErrNoKey) {
		t.Errorf("version 1 signs after the pin to 2: err = %v, want ErrNoKey", err)
	}
	if err := signs(t, e, alg, k2); err != nil {
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
	if err := signs(t, e, alg, k3); err != nil {
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

// faulty fails chosen backend calls once each.
type faulty struct {
	signer.Backend
	mu   sync.Mutex
	fail map[string]bool
}

var errInjected = errors.New("injected failure")

func (f *faulty) take(op string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[op] {
		delete(f.fail, op)
		return true
	}
	return false
}

func (f *faulty) Create(ctx context.Context, rec signer.Record) (signer.Key, error) {
	if f.take("create") {
		return signer.Key{}, errInjected
	}
	return f.Backend.Create(ctx, rec)
}

func (f *faulty) PinSigning(ctx context.Context, v int) error {
	if f.take("pin") {
		return errInjected
	}
	return f.Backend.PinSigning(ctx, v)
}

func (f *faulty) DestroyBelow(ctx context.Context, v int) error {
	if f.take("destroy") {
		return errInjected
	}
	return f.Backend.DestroyBelow(ctx, v)
}

// quiet drops the loop's logs: the test reports what matters.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type events struct{}

func (events) Emit(context.Context, rotation.Event) error { return nil }

// testLifecycleWithFailures drives the rotation loop through rotations,
// activations, destructions and an emergency while backend calls fail, and
// checks after every tick that exactly one key is active and that the next
// tick completes what a failure interrupted.
func testLifecycleWithFailures(t *testing.T, alg signer.Algorithm, e Env) {
	ctx := context.Background()
	clk := clock.NewFake(time.Now()) // Vault stamps versions with its own clock
	fb := &faulty{Backend: e.Backend, fail: map[string]bool{}}
	m, err := rotation.New(rotation.Config{Backend: fb, Rules: rules(t), Algorithm: alg, Clock: clk, Events: events{}, Refresh: time.Minute, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string) *rotation.Snapshot {
		t.Helper()
		s := m.Snapshot()
		if s == nil || !s.HasActive {
			t.Fatalf("%s: no active key", step)
		}
		k := s.Keys[0]
		for _, p := range s.Keys {
			if p.Version == s.Signing.Version {
				k = p
			}
		}
		if err := signs(t, e, alg, k.Key); err != nil {
			t.Fatalf("%s: the active version %d does not sign: %v", step, k.Version, err)
		}
		return s
	}
	tick := func() error { clk.Advance(2 * time.Second); return m.Tick(ctx) } // past any backoff
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	check("bootstrap")

	clk.Advance(time.Hour)
	fb.fail["create"] = true
	if err := m.Tick(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("rotation with a failing create: %v", err)
	}
	check("after a failed rotation")
	if err := tick(); err != nil {
		t.Fatal(err)
	}
	if s := check("rotation completed"); len(s.Keys) != 2 || s.Keys[1].State != rotation.Pending {
		t.Fatalf("after the retried rotation: %+v", s.Keys)
	}

	clk.Advance(11 * time.Minute) // past activates_at (rounded up to the second)
	fb.fail["pin"] = true
	if err := m.Tick(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("activation with a failing pin: err = %v", err)
	}
	check("activation with a failing pin")
	if err := tick(); err != nil {
		t.Fatal(err)
	}
	if s := check("activation completed"); s.Signing.Version != 2 {
		t.Fatalf("version 2 not active: %+v", s.Keys)
	}

	clk.Advance(8 * time.Minute) // past retires_at
	fb.fail["destroy"] = true
	if err := m.Tick(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("destroy with a failure: err = %v", err)
	}
	if s := check("destroy failed"); len(s.Keys) != 2 {
		t.Fatalf("a key left the JWKS although its destruction failed: %+v", s.Keys)
	}
	if err := tick(); err != nil {
		t.Fatal(err)
	}
	if s := check("destroy completed"); len(s.Keys) != 1 {
		t.Fatalf("retired key not destroyed: %+v", s.Keys)
	}

	// An emergency interrupted after its key exists completes on the next tick.
	if _, err := m.Rotate(ctx, rotation.RotateRequest{Actor: "role:admin"}); err != nil {
		t.Fatal(err)
	}
	fb.fail["destroy"] = true
	if _, err := m.Rotate(ctx, rotation.RotateRequest{Emergency: true, Reason: "drill", Actor: "role:admin"}); err == nil {
		t.Fatal("emergency with a failing destroy reported success")
	}
	if err := tick(); err != nil {
		t.Fatal(err)
	}
	s := check("emergency completed")
	if len(s.Keys) != 1 || !s.Keys[0].Emergency || s.Keys[0].State != rotation.Active {
		t.Fatalf("after the emergency: %+v", s.Keys)
	}
	if in, _ := e.Backend.LoadIntent(ctx); in != nil {
		t.Fatal("emergency intent not cleared")
	}
}
