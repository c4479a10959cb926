package vault

import (
	"context"
	"sync"

	"github.com/openedx-keyd/keyd/internal/signer"
)

const (
	// maxBatch bounds the inputs sent in one transit sign call.
	maxBatch = 32
	// maxSenders bounds the calls of one lane in flight at once. More than
	// one lets Vault sign on all its cores (it signs a batch's items one
	// after another); few keep the batches large enough to pay off.
	maxSenders = 4
)

// senders is how many calls of a lane may be in flight. Vault signs a
// batch's items one after another, so RSA (slow signatures) needs parallel
// calls to use Vault's cores; ECDSA and Ed25519 gain more from larger
// batches. Measured with make bench on 2 cores: RSA 1 sender 0.65 of direct
// Vault, 4 senders 1.03; ES256 1, 2 and 4 senders 1.50, 1.54, 1.26.
func senders(alg signer.Algorithm) int {
	if alg == signer.RS256 || alg == signer.RS512 {
		return maxSenders
	}
	return 2
}

// spillAt is the queue length at which a lane with a call in flight starts
// another (up to senders).
func spillAt(signer.Algorithm) int { return 1 }

// batcher coalesces concurrent sign requests that carry the same caller
// token, version and algorithm into transit calls with batch_input. It adds
// no wait of its own: a request is sent at once when fewer than maxSenders
// calls of its lane are in flight, and otherwise goes with the others that
// arrive meanwhile in the next call, so a batch waits at most for one call.
// Requests with different tokens never share a call.
type batcher struct {
	mu    sync.Mutex
	lanes map[laneKey]*lane
	// limit is how many calls of a lane may be in flight (senders; a
	// benchmark compares others).
	limit func(signer.Algorithm) int
	// spill is how many requests must be queued on a lane before a call
	// beyond its first starts (1: as soon as one is).
	spill func(signer.Algorithm) int
}

type laneKey struct {
	token [32]byte // hash of the caller's token, never the token itself
	v     int
	alg   signer.Algorithm
}

type lane struct {
	senders int // calls in flight, each drained by its own goroutine
	queue   []*pending
}

type pending struct {
	ctx   context.Context // the caller's: once it ends, nobody waits for the result
	input []byte
	done  chan signResult // buffered: the sender never blocks
}

type signResult struct {
	sig []byte
	err error
}

// sendFunc signs inputs in one call and returns one result per input.
type sendFunc func(inputs [][]byte) []signResult

func newBatcher() *batcher {
	return &batcher{lanes: map[laneKey]*lane{}, limit: senders, spill: spillAt}
}

// do signs input, in a batch with other requests of the same lane. A
// request that finds fewer than maxSenders senders on its lane starts one,
// which sends batches until the lane's queue is empty; every request waits
// for its own result or its context, whichever comes first.
func (bt *batcher) do(ctx context.Context, k laneKey, input []byte, send sendFunc) ([]byte, error) {
	p := &pending{ctx: ctx, input: input, done: make(chan signResult, 1)}
	bt.mu.Lock()
	l := bt.lanes[k]
	if l == nil {
		l = &lane{}
		bt.lanes[k] = l
	}
	l.queue = append(l.queue, p)
	sender := l.senders == 0 || (l.senders < bt.limit(k.alg) && len(l.queue) >= bt.spill(k.alg))
	if sender {
		l.senders++
	}
	bt.mu.Unlock()

	if sender {
		// The lane is drained by its own goroutines, not by this request:
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

// drain sends the lane's queue in batches of at most maxBatch until it is
// empty. A request whose caller stopped waiting while queued (its budget
// ended behind slow calls) is dropped, not signed: after a partition heals,
// Vault gets the requests someone still waits for, not a backlog.
func (bt *batcher) drain(k laneKey, l *lane, send sendFunc) {
	for {
		bt.mu.Lock()
		if len(l.queue) == 0 {
			l.senders--
			if l.senders == 0 {
				delete(bt.lanes, k)
			}
			bt.mu.Unlock()
			return
		}
		batch := make([]*pending, 0, min(len(l.queue), maxBatch))
		for len(l.queue) > 0 && len(batch) < maxBatch {
			p := l.queue[0]
			l.queue = l.queue[1:]
			if p.ctx.Err() == nil { // its caller has not given up waiting
				batch = append(batch, p)
			}
		}
		bt.mu.Unlock()
		if len(batch) == 0 {
			continue
		}

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
