package clock

import (
	"testing"
	"time"
)

func TestFakeSignalsTimers(t *testing.T) {
	f := NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	if f.WaitForWaiter(10 * time.Millisecond) {
		t.Fatal("a timer is pending before any was started")
	}
	f.After(0) // fires at once: nothing waits
	select {
	case d := <-f.Timers():
		t.Fatalf("After(0) signalled a timer of %v", d)
	default:
	}
	loop := make(chan struct{})
	go func() { // a loop that sleeps twice
		<-f.After(time.Minute)
		<-f.After(time.Minute)
		close(loop)
	}()
	for range 2 {
		if !f.WaitForWaiter(5 * time.Second) {
			t.Fatal("the loop's timer was not signalled")
		}
		if n := f.Waiters(); n != 1 {
			t.Fatalf("Waiters = %d, want 1", n)
		}
		f.Advance(time.Minute)
	}
	<-loop
	select {
	case <-f.Timers(): // a signal of the loop's timers that WaitForWaiter did not need
	default:
	}
	f.After(time.Hour)
	f.After(2 * time.Hour) // the first signal is not taken: one stands for both
	if d := <-f.Timers(); d != time.Hour {
		t.Fatalf("signalled %v, want 1h", d)
	}
	select {
	case d := <-f.Timers():
		t.Fatalf("a second signal (%v) after the buffer was full", d)
	default:
	}
}
