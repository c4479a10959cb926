package rotation

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// lostNewest makes a data dir whose keys/latest_version (2) is above its
// newest key file (1): v2 was set aside in the quarantine and the operator
// removed it there as operations.md says (remove), or a restore lost it.
func lostNewest(t *testing.T, remove bool) (string, *Manager) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	b, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(t0)
	m := newManager(t, b, clk, &recorder{})
	if p := bootstrapAndRotate(t, m); p.Version != 2 {
		t.Fatalf("rotated to v%d, want v2", p.Version)
	}
	v2 := filepath.Join(dir, "keys", "00000002.json")
	if remove {
		if err := os.Remove(v2); err != nil { // a restore without it
			t.Fatal(err)
		}
	} else {
		if err := os.WriteFile(v2, []byte("torn"), 0o600); err != nil {
			t.Fatal(err)
		}
		other, err := local.New(dir) // another process, nothing cached
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Keys(ctx); err != nil { // sets it aside
			t.Fatal(err)
		}
		q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "00000002.json.*"))
		if len(q) != 1 {
			t.Fatalf("v2 not in the quarantine: %v", q)
		}
		if err := os.Remove(q[0]); err != nil { // examined and removed
			t.Fatal(err)
		}
	}
	fresh, err := local.New(dir) // a restart: nothing cached
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	return dir, newManager(t, fresh, clk, &recorder{})
}

// TestCreationSkipsVersionsNoLongerHeld (issue 20, item 3): with
// keys/latest_version above the newest key file, a rotation creates the
// version above every number ever used (not 200 creating nothing) and an
// emergency completes (not "version already created" on every retry).
func TestCreationSkipsVersionsNoLongerHeld(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove bool
	}{{"quarantined file removed", false}, {"lost to a restore", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			_, m := lostNewest(t, tc.remove)
			if err := m.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			p, err := m.Rotate(ctx, RotateRequest{Actor: "role:admin", Reason: "after the loss"})
			if err != nil {
				t.Fatalf("rotate: %v", err)
			}
			if p.Version != 3 || p.State != Pending {
				t.Fatalf("rotate answered v%d (%s), want a new pending v3", p.Version, p.State)
			}

			_, m = lostNewest(t, tc.remove)
			if err := m.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			p, err = m.Rotate(ctx, RotateRequest{Emergency: true, Actor: "role:admin", Reason: "drill"})
			if err != nil {
				t.Fatalf("emergency: %v", err)
			}
			if p.Version != 3 || p.State != Active || !p.Emergency {
				t.Fatalf("emergency answered v%d (%s, emergency %v), want an active emergency v3", p.Version, p.State, p.Emergency)
			}
			if _, k, err := m.SigningKey(m.cfg.Clock.Now()); err != nil || k.Version != 3 {
				t.Fatalf("signing key v%d, %v; want v3", k.Version, err)
			}
		})
	}
}
