package vault

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// TestBatcherCoalescesOneLane checks the batching itself: requests of one
// lane that arrive while a call is in flight share the next call, each
// request gets its own result, and lanes never mix.
func TestBatcherCoalescesOneLane(t *testing.T) {
	bt := newBatcher()
	var calls, held atomic.Int32
	release := make(chan struct{})
	send := func(lane string) sendFunc {
		return func(inputs [][]byte) []signResult {
			calls.Add(1)
			held.Add(int32(len(inputs)))
			<-release // hold the calls in flight while the others queue up
			out := make([]signResult, len(inputs))
			for i, in := range inputs {
				if string(in) == "bad" {
					out[i].err = errors.New("refused")
					continue
				}
				out[i].sig = []byte(lane + ":" + string(in))
			}
			return out
		}
	}
	a := laneKey{token: [32]byte{1}, v: 1, alg: signer.ES256}
	b := laneKey{token: [32]byte{2}, v: 1, alg: signer.ES256}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	run := func(k laneKey, lane, in string) {
		defer wg.Done()
		sig, err := bt.do(context.Background(), k, []byte(in), send(lane))
		switch {
		case in == "bad" && err == nil:
			errs <- fmt.Errorf("%s/%s: no error", lane, in)
		case in != "bad" && string(sig) != lane+":"+in:
			errs <- fmt.Errorf("%s/%s: got %q, %v", lane, in, sig, err)
		}
	}
	wg.Add(1)
	go run(a, "a", "first")
	waitUntil(t, 2*time.Second, func() string { return "the first call never started" }, func() bool { return calls.Load() > 0 })
	for i := range 40 {
		wg.Add(2)
		go run(a, "a", fmt.Sprint(i))
		go run(b, "b", fmt.Sprint(i))
	}
	wg.Add(1)
	go run(a, "a", "bad")
	// Every request is either queued or in a held call before they go.
	queuedOrHeld := func() int {
		bt.mu.Lock()
		defer bt.mu.Unlock()
		n := int(held.Load())
		for _, l := range bt.lanes {
			n += len(l.queue)
		}
		return n
	}
	waitUntil(t, 5*time.Second, func() string { return fmt.Sprintf("%d of 82 requests queued or in a call", queuedOrHeld()) },
		func() bool { return queuedOrHeld() == 82 })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Each lane: up to maxSenders calls started at once, then the queued
	// requests in batches of at most 32; lanes are never merged.
	if n := calls.Load(); n > 2*(maxSenders+2) {
		t.Errorf("%d transit calls for 82 requests: not coalesced", n)
	}
	// The senders retire their lanes once the queues are empty.
	lanes := func() int {
		bt.mu.Lock()
		defer bt.mu.Unlock()
		return len(bt.lanes)
	}
	waitUntil(t, 2*time.Second, func() string { return fmt.Sprintf("%d lanes left after all requests finished", lanes()) },
		func() bool { return lanes() == 0 })
}

// TestBatcherCallerLeavesOnItsDeadline: under steady load the lane never
// empties, yet the request that opened it returns on its own deadline.
func TestBatcherCallerLeavesOnItsDeadline(t *testing.T) {
	bt := newBatcher()
	k := laneKey{token: [32]byte{3}, v: 1, alg: signer.ES256}
	release := make(chan struct{})
	send := func(inputs [][]byte) []signResult {
		<-release
		return make([]signResult, len(inputs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	if _, err := bt.do(ctx, k, []byte("x"), send); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the caller's deadline", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Fatalf("the first caller waited %v for a stuck batch", took)
	}
	close(release)
}

// Requests whose callers gave up while queued behind stuck calls (a
// partition) are not sent once the calls return: after a heal, Vault gets
// the requests someone still waits for, not a backlog.
func TestBatcherDropsRequestsNobodyWaitsFor(t *testing.T) {
	bt := newBatcher()
	k := laneKey{token: [32]byte{4}, v: 1, alg: signer.ES256}
	release := make(chan struct{})
	var held, sent atomic.Int32
	send := func(inputs [][]byte) []signResult {
		held.Add(int32(len(inputs)))
		<-release
		sent.Add(int32(len(inputs)))
		return make([]signResult, len(inputs))
	}
	// Fill the lane's senders with stuck calls (one at a time, so each is
	// its own call), then queue requests whose budget ends while they wait.
	var wg sync.WaitGroup
	for i := range senders(k.alg) {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = bt.do(context.Background(), k, []byte("stuck"), send) }()
		waitUntil(t, 2*time.Second, func() string { return "a stuck call did not start" }, func() bool { return held.Load() == int32(i+1) })
	}
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := bt.do(ctx, k, []byte("late"), send)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("queued request: %v, want its deadline", err)
		}
	}
	close(release)
	wg.Wait()
	// The stuck calls' own inputs only.
	if got := sent.Load(); got != int32(senders(k.alg)) {
		t.Errorf("%d inputs sent; want %d (the given-up requests dropped)", got, senders(k.alg))
	}
}

// TestBatcherECDSAOneCallInFlight: an ES256 request that arrives while a
// call of its lane is in flight does not start another call: it waits for
// that one to return and goes, with every request that arrived meanwhile,
// in the next call (batches at login rates, where a second call in flight
// would carry one signature). An idle lane sends at once.
func TestBatcherECDSAOneCallInFlight(t *testing.T) {
	bt := newBatcher()
	k := laneKey{token: [32]byte{5}, v: 1, alg: signer.ES256}
	var mu sync.Mutex
	var sizes []int
	release := make(chan struct{})
	send := func(inputs [][]byte) []signResult {
		mu.Lock()
		sizes = append(sizes, len(inputs))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release // hold the first call while the others arrive
		}
		return make([]signResult, len(inputs))
	}
	calls := func() int { mu.Lock(); defer mu.Unlock(); return len(sizes) }
	var wg sync.WaitGroup
	do := func() {
		defer wg.Done()
		if _, err := bt.do(context.Background(), k, []byte("x"), send); err != nil {
			t.Error(err)
		}
	}
	wg.Add(1)
	go do()
	waitUntil(t, 2*time.Second, func() string { return "the idle lane did not send at once" }, func() bool { return calls() == 1 })
	for range 7 {
		wg.Add(1)
		go do()
	}
	queued := func() int {
		bt.mu.Lock()
		defer bt.mu.Unlock()
		if l := bt.lanes[k]; l != nil {
			return len(l.queue)
		}
		return 0
	}
	waitUntil(t, 2*time.Second, func() string { return fmt.Sprintf("%d of 7 queued, %d calls", queued(), calls()) },
		func() bool { return queued() == 7 })
	if n := calls(); n != 1 {
		t.Fatalf("%d calls in flight for one ES256 lane, want 1", n)
	}
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[1] != 7 {
		t.Errorf("calls carried %v signatures, want [1 7]", sizes)
	}
}
