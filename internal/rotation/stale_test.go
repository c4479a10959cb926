package rotation

import (
	"context"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// downKeys fails Keys while down is set.
type downKeys struct {
	Backend
	down bool
}

func (d *downKeys) Keys(ctx context.Context) ([]signer.Key, error) {
	if d.down {
		return nil, signer.ErrUnavailable
	}
	return d.Backend.Keys(ctx)
}

// The staleness rule of DESIGN.md "Vault HA": Health is Stale once the last
// successful read of the keys is older than StaleAfter, and fresh again at
// the next successful read.
func TestHealthStaleAfterTheLastRefresh(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	b := &downKeys{Backend: newLocal(t)}
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
	b.down = true
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
	b.down = false
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
