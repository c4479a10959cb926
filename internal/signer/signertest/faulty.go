// Package signertest holds the fake backend the test suites share: a real
// backend whose chosen calls fail on demand.
package signertest

import (
	"context"
	"errors"
	"sync"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Op names a backend call Faulty can fail.
type Op string

// The calls Faulty can fail: the ones that change the keys.
const (
	Create  Op = "create"
	Pin     Op = "pin"
	Destroy Op = "destroy"
)

// ErrInjected is the error of a call Faulty fails.
var ErrInjected = errors.New("signertest: injected failure")

// Faulty is Backend whose next calls of an operation fail with ErrInjected,
// as many as Fail asks for. It is safe for concurrent use.
type Faulty struct {
	signer.Backend
	mu   sync.Mutex
	fail map[Op]int
}

// Fail makes the next n calls of op fail (0: none).
func (f *Faulty) Fail(op Op, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		f.fail = map[Op]int{}
	}
	f.fail[op] = n
}

// Left is how many of the failures asked for op are still to come.
func (f *Faulty) Left(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[op]
}

func (f *Faulty) take(op Op) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[op] > 0 {
		f.fail[op]--
		return true
	}
	return false
}

// Create fails while failures of Create are left, else creates.
func (f *Faulty) Create(ctx context.Context, rec signer.Record) (signer.Key, error) {
	if f.take(Create) {
		return signer.Key{}, ErrInjected
	}
	return f.Backend.Create(ctx, rec)
}

// PinSigning fails while failures of Pin are left, else pins.
func (f *Faulty) PinSigning(ctx context.Context, v int) error {
	if f.take(Pin) {
		return ErrInjected
	}
	return f.Backend.PinSigning(ctx, v)
}

// DestroyBelow fails while failures of Destroy are left, else destroys.
func (f *Faulty) DestroyBelow(ctx context.Context, v int) error {
	if f.take(Destroy) {
		return ErrInjected
	}
	return f.Backend.DestroyBelow(ctx, v)
}
