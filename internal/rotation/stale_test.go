package rotation

import (
	"context"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/signertest"
)

// The staleness rule of docs/design.md "Vault HA": Health is Stale once the last
// successful read of the keys is older than StaleAfter, and fresh again at
// the next successful read.
func TestHealthStaleAfterTheLastRefresh(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	b := &signertest.Faulty{Backend: newLocal(t)}
	m, err := New(Config{Backend: b, Rules: hourly(t), Algorithm: signer.ES256, Clock: clk, Events: &recorder{},
		Refresh: time.Minute, Logger: quiet, StaleAfter: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	h := m.Health()
	if h.Stale || h.LastRefresh != t0.Format(time.RFC3339Nano) {
		t.Fatalf("after a read: stale %v, last refresh %q", h.Stale, h.LastRefresh)
	}
	b.Break(signertest.Keys, signer.ErrUnavailable)
	for _, step := range []struct {
		at    time.Duration
		stale bool
	}{{time.Minute, false}, {5 * time.Minute, false}, {5*time.Minute + time.Second, true}, {time.Hour, true}} {
		clk.Set(t0.Add(step.at))
		_ = m.Tick(ctx) // fails: the backend is down
		if got := m.Health(); got.Stale != step.stale || got.BackendUp {
			t.Errorf("%v after the last read: stale %v backend_up %v, want stale %v, backend down", step.at, got.Stale, got.BackendUp, step.stale)
		}
	}
	b.Break(signertest.Keys, nil)
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if h := m.Health(); h.Stale {
		t.Error("still stale after a successful read")
	}
	// Without StaleAfter, never stale.
	m2, _ := New(Config{Backend: b, Rules: hourly(t), Algorithm: signer.ES256, Clock: clk, Events: &recorder{}, Refresh: time.Minute, Logger: quiet})
	_ = m2.Tick(ctx)
	clk.Advance(1000 * time.Hour)
	if m2.Health().Stale {
		t.Error("stale without StaleAfter")
	}
}

// Issue 20 item 8: staleness counts from the last published snapshot (the
// JWKS served), not from the last read. A tick whose read succeeds and
// whose next step hangs or fails publishes nothing; before, /readyz said
// 200 (a fresh read) while the JWKS was as old as the last publication and
// could lack the key another replica signs with.
func TestHealthStaleAfterTheLastPublication(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	b := &signertest.Faulty{Backend: newLocal(t)}
	m, err := New(Config{Backend: b, Rules: hourly(t), Algorithm: signer.ES256, Clock: clk, Events: &recorder{},
		Refresh: time.Minute, Logger: quiet, StaleAfter: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Tick(ctx); err != nil { // publishes version 1
		t.Fatal(err)
	}
	// An hour later (no tick meanwhile: the loop was stuck) a rotation is
	// due; the tick reads the keys, then its creation hangs.
	// Create hangs until released (a write whose packets a partition
	// drops, while reads still went through).
	entered, release := make(chan struct{}), make(chan struct{})
	b.Around(signertest.Create, func(context.Context, func() error) error {
		entered <- struct{}{}
		<-release
		return signer.ErrUnavailable
	})
	clk.Set(t0.Add(time.Hour))
	done := make(chan error, 1)
	go func() { done <- m.Tick(ctx) }()
	<-entered
	clk.Advance(time.Second)
	if h := m.Health(); !h.Stale || !h.BackendUp || h.LastRefresh != t0.Format(time.RFC3339Nano) {
		t.Errorf("a tick hangs after a fresh read, the JWKS is an hour old: stale %v, backend_up %v, last_refresh %s; want stale since %s",
			h.Stale, h.BackendUp, h.LastRefresh, t0.Format(time.RFC3339Nano))
	}
	close(release)
	if err := <-done; err == nil {
		t.Fatal("the tick succeeded although the creation failed")
	}
	if h := m.Health(); !h.Stale {
		t.Error("the tick failed after its read, publishing nothing: not stale")
	}
	// Once a snapshot is published again, it is fresh.
	b.Around(signertest.Create, nil)
	clk.Advance(10 * time.Minute) // past the action's backoff
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if h := m.Health(); h.Stale || h.LastRefresh != clk.Now().Format(time.RFC3339Nano) {
		t.Errorf("after a publication: stale %v, last_refresh %s", h.Stale, h.LastRefresh)
	}
}
