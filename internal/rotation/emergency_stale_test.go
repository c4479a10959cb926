package rotation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer/local"
	"github.com/openedx-keyd/keyd/internal/signer/signertest"
)

// TestEmergencyWithAStaleSnapshot: an emergency asked for on a replica
// that cannot read the keys takes the versions it compromises from its
// last snapshot, which may miss a newer key another replica made before the
// request (here an emergency key, v2). Every key that existed at the
// request is compromised: v2 must not sign once the keys can be read again,
// and the emergency must end with a new key, not by adopting v2 as its own.
func TestEmergencyWithAStaleSnapshot(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	dir := t.TempDir()
	lb, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	u := &signertest.Faulty{Backend: lb}
	a := newManager(t, u, clk, &recorder{})
	if err := a.Tick(ctx); err != nil { // v1, bootstrap
		t.Fatal(err)
	}
	lb2, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := newManager(t, lb2, clk, &recorder{})
	clk.Advance(time.Minute)
	if p, err := b.Rotate(ctx, RotateRequest{Emergency: true, Reason: "first leak", Actor: "ops"}); err != nil || p.Version != 2 {
		t.Fatalf("replica b's emergency = v%d, %v", p.Version, err)
	}

	// Replica a, whose snapshot still shows v1 only, cannot read the keys
	// when a new leak (of v2) is reported to it.
	clk.Advance(time.Minute)
	u.Break(signertest.Keys, errInjected)
	if _, err := a.Rotate(ctx, RotateRequest{Emergency: true, Reason: "second leak", Actor: "ops"}); err == nil {
		t.Fatal("emergency with unreadable keys reported complete")
	}
	u.Break(signertest.Keys, nil)

	// The keys are readable again; the sign path re-reads them.
	if err := a.Refresh(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, k, err := a.SigningKey(clk.Now()); !errors.Is(err, ErrEmergencyPending) {
		t.Errorf("v%d signs while the emergency that compromises it is pending (err %v)", k.Version, err)
	}

	clk.Advance(time.Minute)
	if err := a.Tick(ctx); err != nil {
		t.Fatalf("Tick: %v", err)
	}
	_, k, err := a.SigningKey(clk.Now())
	if err != nil || k.Version <= 2 {
		t.Fatalf("after the emergency the signing key is v%d (%v), want a new emergency key above v2", k.Version, err)
	}
}
