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
// calls to use Vault's cores: measured with make bench on 2 cores, RSA 1
// sender 0.65 of direct Vault, 4 senders 1.03. ECDSA and Ed25519 gain more
// from larger batches: one call in flight, and the requests that arrive
// meanwhile go together in the next call as soon as it returns. Measured in
// process against real Vault (TestBenchSignConcurrency, ES256, three runs):
// at 8 concurrent signers 1 call in flight gave 1560-2018 signs/s, p50
// 3.3-3.6 ms, where 2 gave 1344-1912 and 3.5-4.4 ms; at 64 signers and at 1
// the two were level (docs/PERFORMANCE.md).
func senders(alg signer.Algorithm) int {
	if alg == signer.RS256 || alg == signer.RS512 {
		return maxSenders
	}
	return 1
}

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

func newBatcher() *batcher { return &batcher{lanes: map[laneKey]*lane{}, limit: senders} }

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
	sender := l.senders < bt.limit(k.alg)
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
