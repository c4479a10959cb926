package rotation

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/local"
	"github.com/openedx-keyd/keyd/internal/signer/signertest"
)

var errCrash = errors.New("simulated crash")

// TestDestroyedEventSurvivesACrashAfterTheDeletion: keyd dies right after
// deleting a retired key; the restarted keyd cannot see the key any more,
// so its destroyed event must already be in the trail.
func TestDestroyedEventSurvivesACrashAfterTheDeletion(t *testing.T) {
	clk := clock.NewFake(t0)
	dir := t.TempDir()
	lb, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ev := &recorder{} // the durable trail: it outlives the process
	// The backend deletes the keys and then "crashes": the process that
	// called it is thrown away, so whatever it held only in memory is lost.
	crashing := &signertest.Faulty{Backend: lb}
	crashing.Around(signertest.Destroy, func(_ context.Context, destroy func() error) error {
		if err := destroy(); err != nil {
			return err
		}
		return errCrash
	})
	m := newManager(t, crashing, clk, ev)
	ctx := context.Background()
	for _, step := range []time.Duration{0, time.Hour, 11 * time.Minute} { // bootstrap, rotate, activate
		clk.Advance(step)
		if err := m.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(8 * time.Minute) // v1 past retires_at
	if err := m.Tick(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("Tick = %v, want the simulated crash", err)
	}

	restarted, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	m2 := newManager(t, restarted, clk, ev)
	if err := m2.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if keys, _ := restarted.Keys(ctx); len(keys) != 1 || keys[0].Version != 2 {
		t.Fatalf("keys after restart: %+v", keys)
	}
	if ev.count("destroyed") != 1 {
		t.Fatalf("the destroyed event of v1 was lost with the crashed process: %+v", ev.events)
	}
}

// TestEmergencyWithACorruptKeyFile: a corrupt pending key in the data dir
// (read by a freshly started keyd) neither stops the snapshot nor the
// emergency rotation; the new key never reuses the bad file's version.
func TestEmergencyWithACorruptKeyFile(t *testing.T) {
	clk := clock.NewFake(t0)
	dir := t.TempDir()
	lb, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m := newManager(t, lb, clk, &recorder{})
	bootstrapAndRotate(t, m) // v2 pending
	if err := os.WriteFile(filepath.Join(dir, "keys", "00000002.json"), []byte(`{"record":`), 0o600); err != nil {
		t.Fatal(err)
	}

	restarted, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	m2 := newManager(t, restarted, clk, &recorder{})
	if err := m2.Tick(ctx); err != nil {
		t.Fatalf("Tick with a corrupt pending key: %v", err)
	}
	if s := m2.Snapshot(); s == nil || !s.HasActive || s.Signing.Version != 1 {
		t.Fatalf("snapshot with a corrupt pending key: %+v", s)
	}
	p, err := m2.Rotate(ctx, RotateRequest{Emergency: true, Reason: "key leaked", Actor: "role:admin"})
	if err != nil {
		t.Fatalf("emergency with a corrupt key file: %v", err)
	}
	if p.Version != 3 || p.State != Active {
		t.Fatalf("emergency key = v%d %s, want v3 active (v2 is never reused)", p.Version, p.State)
	}
	if _, err := restarted.Sign(ctx, signer.Credential{}, 1, signer.ES256, []byte("x")); err == nil {
		t.Error("v1 still signs after the emergency")
	}
	if len(restarted.Problems()) == 0 {
		t.Error("the corrupt key file is not reported")
	}
}
