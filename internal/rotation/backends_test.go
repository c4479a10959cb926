package rotation_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/conformance"
	"github.com/openedx-keyd/keyd/internal/signer/signertest"
	"github.com/openedx-keyd/keyd/internal/signer/vault"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
)

// The lifecycle loop over each real backend (local files, a real Vault),
// on the environments of the backends' conformance suite.

func TestMain(m *testing.M) { vaulttest.Main(m) }

func TestLifecycleWithFailures(t *testing.T) {
	for name, env := range map[string]func(*testing.T, signer.Algorithm) conformance.Env{"local": conformance.Local, "vault": conformance.Vault} {
		t.Run(name, func(t *testing.T) {
			for _, alg := range signer.Algorithms {
				t.Run(string(alg), func(t *testing.T) { testLifecycleWithFailures(t, alg, env(t, alg)) })
			}
		})
	}
}

// discard drops the loop's logs: the test reports what matters.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

type noEvents struct{}

func (noEvents) Emit(context.Context, rotation.Event) error { return nil }

func hourlyRules(t *testing.T) rotation.Rules {
	s, err := cron.ParseStandard("@every 1h")
	if err != nil {
		t.Fatal(err)
	}
	return rotation.Rules{Schedule: s, ScheduleSpec: "@every 1h", PropagationDelay: 10 * time.Minute, RetireAfter: 7 * time.Minute}
}

func testLifecycleWithFailures(t *testing.T, alg signer.Algorithm, e conformance.Env) {
	ctx := context.Background()
	clk := clock.NewFake(time.Now()) // Vault stamps versions with its own clock
	fb := &signertest.Faulty{Backend: e.Backend}
	m, err := rotation.New(rotation.Config{Backend: fb, Rules: hourlyRules(t), Algorithm: alg, Clock: clk, Events: noEvents{}, Refresh: time.Minute, Logger: discard})
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
		if err := conformance.Signs(t, e, alg, k.Key); err != nil {
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
	fb.Fail(signertest.Create, 1)
	if err := m.Tick(ctx); !errors.Is(err, signertest.ErrInjected) {
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
	fb.Fail(signertest.Pin, 1)
	if err := m.Tick(ctx); !errors.Is(err, signertest.ErrInjected) {
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
	fb.Fail(signertest.Destroy, 1)
	if err := m.Tick(ctx); !errors.Is(err, signertest.ErrInjected) {
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
	fb.Fail(signertest.Destroy, 1)
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

// TestVaultRecordlessVersionGetsOneRecord: a version made in Vault without
// its lifecycle record (a crash between rotate and the record write) gets
// one record, written by the first replica that sees it, and every replica
// follows that record rather than its own settings.
func TestVaultRecordlessVersionGetsOneRecord(t *testing.T) {
	v := vaulttest.StartShared(t)
	ctx := context.Background()
	opts := conformance.VaultOptions(signer.ES256)
	root := v.Client(t, v.RootToken)
	if _, err := vault.Bootstrap(ctx, root, opts); err != nil {
		t.Fatal(err)
	}
	replica := func(delay time.Duration) *rotation.Manager {
		b := conformance.VaultBackend(t, v, opts)
		r := hourlyRules(t)
		r.PropagationDelay = delay
		m, err := rotation.New(rotation.Config{Backend: b, Rules: r, Algorithm: signer.ES256, Events: noEvents{}, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := replica(10*time.Minute), replica(5*time.Minute)
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write(opts.Mount+"/keys/keyd-jwt/rotate", nil); err != nil { // version 2, no record
		t.Fatal(err)
	}
	if err := b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	pa, pb := a.Snapshot().Keys, b.Snapshot().Keys
	if len(pa) != 2 || len(pb) != 2 || !pa[1].HasRecord {
		t.Fatalf("version 2 has no record: %+v", pa)
	}
	if !pa[1].ActivatesAt.Equal(pb[1].ActivatesAt) || pa[1].ActivatesAt.Sub(pa[1].CreatedAt) < 5*time.Minute {
		t.Fatalf("replicas follow different records: %v vs %v (created %v)", pa[1].ActivatesAt, pb[1].ActivatesAt, pa[1].CreatedAt)
	}
	if pa[1].State != rotation.Pending {
		t.Fatalf("a version without a record signs at once: %s", pa[1].State)
	}
	if !a.ConfigMismatch() || b.ConfigMismatch() {
		t.Fatalf("mismatch: a=%v b=%v; want a (10m) to report it, b (5m, wrote the record) not", a.ConfigMismatch(), b.ConfigMismatch())
	}
}
