package rotation

import (
	"context"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer/signertest"
)

// TestRefreshOnlyReads: the sign path's Refresh re-reads the keys another
// replica changed and follows them at once, but never creates, destroys or
// pins a key nor records an event, even with a rotation and a destruction
// due; the next tick does those.
func TestRefreshOnlyReads(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	lb := newLocal(t)
	ev := &recorder{}
	here := &signertest.Faulty{Backend: lb}
	writesOf := func() int64 { // the calls that change the backend
		return here.Calls(signertest.Create) + here.Calls(signertest.Destroy) + here.Calls(signertest.Pin)
	}
	m := newManager(t, here, clk, ev)
	other := newManager(t, lb, clk, &recorder{}) // another replica on the same keys
	ctx := context.Background()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Rotate(ctx, RotateRequest{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour) // version 2 active, version 1 past retirement, a rotation due
	writes, events := writesOf(), len(ev.events)
	since := m.Snapshot().At
	if err := m.Refresh(ctx, since); err != nil {
		t.Fatal(err)
	}
	if got := writesOf(); got != writes {
		t.Errorf("Refresh made %d backend writes, want none", got-writes)
	}
	if got := len(ev.events); got != events {
		t.Errorf("Refresh recorded %d events, want none", got-events)
	}
	if s := m.Snapshot(); !s.At.After(since) || len(s.Keys) != 1 || s.Keys[0].Version != 2 {
		t.Fatalf("snapshot after Refresh: at %v, keys %+v; want a new one publishing version 2 alone", s.At, s.Keys)
	}
	if keys, _ := lb.Keys(ctx); len(keys) != 2 {
		t.Errorf("the backend holds %d versions after Refresh, want both (destroying is the loop's)", len(keys))
	}
	if _, k, err := m.SigningKey(clk.Now()); err != nil || k.Version != 2 {
		t.Errorf("SigningKey after Refresh = v%d, %v; want version 2", k.Version, err)
	}
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if writesOf() == writes {
		t.Error("the tick after Refresh applied nothing")
	}
}

// The sign path's Refresh waits for a tick in progress (one that hangs on a
// partitioned backend) no longer than the sign request's own budget.
func TestRefreshGivesUpWithItsContext(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	m := newManager(t, newLocal(t), clk, &recorder{})
	if err := m.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock() // a tick in progress, stuck on the backend
	defer m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Refresh(ctx, m.Snapshot().At) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Refresh succeeded while a tick held the lifecycle lock")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Refresh still waits for the tick after its context ended")
	}
}
