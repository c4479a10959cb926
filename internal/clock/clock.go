// Package clock injects time: production code takes a Clock, tests move a
// Fake one forward instead of sleeping.
package clock

import (
	"context"
	"sync"
	"time"
)

// Clock tells the time and makes timers.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Real is the wall clock.
type Real struct{}

// Now returns the current UTC time.
func (Real) Now() time.Time { return time.Now().UTC() }

// After is time.After.
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Fake is a clock that moves only when Advance or Set is called. Each timer
// After starts is signalled on Timers, so a test waits for a loop to go
// back to sleep instead of polling (as spire's test/clock does).
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	timers  chan time.Duration
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewFake returns a fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t.UTC(), timers: make(chan time.Duration, 1)} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that fires once the fake time reaches now+d. A
// timer that has to wait (d > 0) is signalled on Timers.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, waiter{at: f.now.Add(d), ch: ch})
	select {
	case f.timers <- d:
	default: // the last signal is not taken yet: it stands for this one too
	}
	return ch
}

// Timers receives the duration of each timer After starts that has to
// wait. It holds one signal and never blocks After.
func (f *Fake) Timers() <-chan time.Duration { return f.timers }

// WaitForWaiter waits up to timeout (wall time) until a timer is pending,
// woken by each timer After starts rather than polling, and reports
// whether one is: the loop under test is asleep and the clock may move.
func (f *Fake) WaitForWaiter(timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for f.Waiters() == 0 {
		select {
		case <-f.timers: // a signal left from an earlier timer only re-checks
		case <-deadline.C:
			return false
		}
	}
	return true
}

// Advance moves the clock forward by d and fires every timer now due.
func (f *Fake) Advance(d time.Duration) { f.Set(f.Now().Add(d)) }

// Set moves the clock to t and fires every timer now due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t.UTC()
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- f.now
	}
	f.waiters = kept
}

// Waiters reports how many timers are pending.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// Every calls fn each time d passes on c, until ctx ends: the periodic
// loops (storage checks, moving back to a preferred Vault address) share
// it, so a test drives them with a Fake clock.
func Every(ctx context.Context, c Clock, d time.Duration, fn func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.After(d):
			fn()
		}
	}
}
