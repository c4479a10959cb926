package rotation

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// TestUnreadableActivationIsNoActivation (issue 20, item 2): an activation
// record of a gated key that cannot be read (here one without its time,
// which used to read as "active since activates_at") means "not yet
// activated": the key waits for its clients, at most until its max wait,
// and then activates with an activation_unconfirmed event.
func TestUnreadableActivationIsNoActivation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := local.NewPropagationStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(t0)
	ev := &recorder{}
	r := hourly(t)
	r.ExpectedClients, r.InstanceWindow, r.ActivationMaxWait = []string{"ecommerce"}, time.Hour, 2*time.Hour
	m, err := New(Config{Backend: b, Propagation: st, Rules: r, Algorithm: "ES256", Clock: clk, Events: ev, Refresh: time.Minute, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	p := bootstrapAndRotate(t, m)
	for _, bad := range []string{`{"version":2}`, `{"version":2,"at":"2030-01-0`} {
		if err := os.WriteFile(filepath.Join(dir, "propagation", "activations", "2.json"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		clk.Advance(11 * time.Minute) // past activates_at
		if err := m.Tick(ctx); err != nil {
			t.Fatalf("tick over the bad activation %s: %v", bad, err)
		}
		if _, k, err := m.SigningKey(clk.Now()); err != nil || k.Version != 1 {
			t.Fatalf("with the activation %s: v%d signs (%v), want v1 while v2 waits for its clients", bad, k.Version, err)
		}
		if q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "propagation.activations.2.json.*")); len(q) == 0 {
			t.Fatalf("the bad activation %s was not set aside", bad)
		}
	}
	clk.Set(p.ActivatesAt.Add(2 * time.Hour)) // the max wait
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, k, err := m.SigningKey(clk.Now()); err != nil || k.Version != 2 {
		t.Fatalf("at the max wait: v%d signs (%v), want v2", k.Version, err)
	}
	if ev.count(audit.ActivationUnconfirmed) != 1 {
		t.Errorf("%d activation_unconfirmed events, want 1", ev.count(audit.ActivationUnconfirmed))
	}
}
