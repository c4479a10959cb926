// Package signertest holds the fake backend the test suites share: a real
// backend whose chosen calls fail, count, block or crash on demand.
package signertest

import (
	"context"
	"errors"
	"sync"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Op names a backend call Faulty can fail.
type Op string

// The calls Faulty can fail, count and hook.
const (
	Keys       Op = "keys"
	Create     Op = "create"
	Pin        Op = "pin"
	Destroy    Op = "destroy"
	SaveIntent Op = "save_intent"
)

// ErrInjected is the error of a call Faulty fails.
var ErrInjected = errors.New("signertest: injected failure")

// Hook runs in place of a call: call makes it on the wrapped backend (or is
// never called: the backend is not reached), and the hook's error is the
// call's.
type Hook func(ctx context.Context, call func() error) error

// Faulty is a Backend whose calls fail on demand: the next n calls of an
// operation (Fail), or every call while it is broken (Break); a call that
// does not fail runs through the operation's hook (Around), if any. It
// counts every call (Calls). It is safe for concurrent use.
type Faulty struct {
	signer.Backend
	mu     sync.Mutex
	fail   map[Op]int
	broken map[Op]error
	around map[Op]Hook
	calls  map[Op]int64
}

// Fail makes the next n calls of op fail with ErrInjected (0: none).
func (f *Faulty) Fail(op Op, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	set(&f.fail, op, n)
}

// Left is how many of the failures asked for op are still to come.
func (f *Faulty) Left(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[op]
}

// Break makes every call of op fail with err until Break(op, nil).
func (f *Faulty) Break(op Op, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	set(&f.broken, op, err)
}

// Around runs every call of op that does not fail through h (nil: none).
func (f *Faulty) Around(op Op, h Hook) {
	f.mu.Lock()
	defer f.mu.Unlock()
	set(&f.around, op, h)
}

// Calls is how many calls of op were made, failed or not.
func (f *Faulty) Calls(op Op) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func set[V any](m *map[Op]V, op Op, v V) {
	if *m == nil {
		*m = map[Op]V{}
	}
	(*m)[op] = v
}

// do makes a call of op: counted, failed as asked, else through its hook.
func (f *Faulty) do(ctx context.Context, op Op, call func() error) error {
	f.mu.Lock()
	set(&f.calls, op, f.calls[op]+1)
	err, h := f.broken[op], f.around[op]
	if f.fail[op] > 0 {
		f.fail[op]--
		err = ErrInjected
	}
	f.mu.Unlock()
	switch {
	case err != nil:
		return err
	case h != nil:
		return h(ctx, call)
	}
	return call()
}

// Keys lists the keys unless the call fails.
func (f *Faulty) Keys(ctx context.Context) ([]signer.Key, error) {
	var keys []signer.Key
	err := f.do(ctx, Keys, func() (err error) { keys, err = f.Backend.Keys(ctx); return err })
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// Create creates unless the call fails.
func (f *Faulty) Create(ctx context.Context, rec signer.Record) (signer.Key, error) {
	var k signer.Key
	err := f.do(ctx, Create, func() (err error) { k, err = f.Backend.Create(ctx, rec); return err })
	if err != nil {
		return signer.Key{}, err
	}
	return k, nil
}

// PinSigning pins unless the call fails.
func (f *Faulty) PinSigning(ctx context.Context, v int) error {
	return f.do(ctx, Pin, func() error { return f.Backend.PinSigning(ctx, v) })
}

// DestroyBelow destroys unless the call fails.
func (f *Faulty) DestroyBelow(ctx context.Context, v int) error {
	return f.do(ctx, Destroy, func() error { return f.Backend.DestroyBelow(ctx, v) })
}

// SaveIntent stores the intent unless the call fails.
func (f *Faulty) SaveIntent(ctx context.Context, in signer.Intent) error {
	return f.do(ctx, SaveIntent, func() error { return f.Backend.SaveIntent(ctx, in) })
}
