package vault

import (
	"context"
	"sync"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// maxBatch bounds the inputs sent in one transit sign call.
const maxBatch = 32

// batcher coalesces concurrent sign requests that carry the same caller
// token, version and algorithm into one transit call with batch_input. It
// adds no wait of its own: the first request of a lane is sent at once, and
// those arriving while it is in flight go together in the next call, so a
// batch waits at most for the call before it. Requests with different tokens
// never share a call.
type batcher struct {
	mu    sync.Mutex
	lanes map[laneKey]*lane
}

type laneKey struct {
	token [32]byte // hash of the caller's token, never the token itself
	v     int
	alg   signer.Algorithm
}

type lane struct {
	busy  bool
	queue []*pending
}

type pending struct {
	input []byte
	done  chan signResult // buffered: the sender never blocks
}

type signResult struct {
	sig []byte
	err error
}

// sendFunc signs inputs in one call and returns one result per input.
type sendFunc func(inputs [][]byte) []signResult

func newBatcher() *batcher { return &batcher{lanes: map[laneKey]*lane{}} }

// do signs input, in a batch with other requests of the same lane. The first
// request of an idle lane starts a sender that sends batches until the
// lane's queue is empty; every request waits for its own result or its
// context, whichever comes first.
func (bt *batcher) do(ctx context.Context, k laneKey, input []byte, send sendFunc) ([]byte, error) {
	p := &pending{input: input, done: make(chan signResult, 1)}
	bt.mu.Lock()
	l := bt.lanes[k]
	if l == nil {
		l = &lane{}
		bt.lanes[k] = l
	}
	l.queue = append(l.queue, p)
	sender := !l.busy
	l.busy = true
	bt.mu.Unlock()

	if sender {
		// The lane is drained by its own goroutine, not by this request:
		// under steady load the queue may never empty, and no request may
		// wait longer than its own context allows.
		go bt.drain(k, l, send)
	}
	select {
	case r := <-p.done:
		return r.sig, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// drain sends the lane's queue in batches of at most maxBatch until it is empty.
func (bt *batcher) drain(k laneKey, l *lane, send sendFunc) {
	for {
		bt.mu.Lock()
		if len(l.queue) == 0 {
			l.busy = false
			delete(bt.lanes, k)
			bt.mu.Unlock()
			return
		}
		n := min(len(l.queue), maxBatch)
		batch := l.queue[:n:n]
		l.queue = l.queue[n:]
		bt.mu.Unlock()

		inputs := make([][]byte, len(batch))
		for i, p := range batch {
			inputs[i] = p.input
		}
		results := send(inputs)
		for i, p := range batch {
			p.done <- results[i]
		}
	}
}
