package clock_test

import (
	"context"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
)

// TestEveryFollowsTheFakeClock: Every calls fn once per interval of the
// clock it is given, and stops when ctx ends.
func TestEveryFollowsTheFakeClock(t *testing.T) {
	c := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		clock.Every(ctx, c, time.Minute, func() { calls <- struct{}{} })
		close(done)
	}()
	for i := range 3 {
		if !c.WaitForWaiter(5 * time.Second) {
			t.Fatalf("round %d: Every never waited on the clock", i)
		}
		select {
		case <-calls:
			t.Fatalf("round %d: fn ran before the interval passed", i)
		default:
		}
		c.Advance(time.Minute)
		select {
		case <-calls:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: fn did not run after the interval", i)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Every did not return after ctx ended")
	}
}
