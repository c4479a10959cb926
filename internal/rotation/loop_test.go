package rotation

import (
	"errors"
	"testing"
	"time"
)

// TestBackoffAlone: the loop's failure state without a manager. A failing
// read doubles its backoff from a second up to the refresh interval; once
// an action failed the bound is maxActionBackoff, and it stays an action
// until cleared. Only another step or error counts as a change.
func TestBackoffAlone(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &backoff{refresh: 10 * time.Second}
	down := errors.New("down")
	var got []time.Duration
	for i := range 6 {
		f, changed := b.fail(now, "keys", down, false)
		if changed != (i == 0) {
			t.Errorf("read failure %d: changed %v", i+1, changed)
		}
		got = append(got, f.Backoff)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("read backoffs %v, want %v", got, want)
		}
	}
	if !b.actionAllowed(now) || b.lastErr.Load() == nil || *b.lastErr.Load() != "rotation: read backend: down" {
		t.Fatalf("a failed read: actions allowed %v, last error %v", b.actionAllowed(now), b.lastErr.Load())
	}

	f, changed := b.fail(now, "rotate", down, true)
	if !changed || f.Backoff != 20*time.Second || f.Failures != 7 || b.actionAllowed(now) || !b.actionAllowed(f.RetryAt) {
		t.Fatalf("a failed action: %+v changed %v", f, changed)
	}
	for range 10 {
		f, _ = b.fail(now, "keys", down, false) // a read after an action: still an action
	}
	if f.Backoff != maxActionBackoff || !f.action {
		t.Fatalf("backoff %v (action %v), want %v", f.Backoff, f.action, maxActionBackoff)
	}
	if b.clear() == nil || b.failure.Load() != nil || b.lastErr.Load() != nil || !b.actionAllowed(now) {
		t.Fatal("clear left a failure")
	}
}
