package server

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
)

// chainWatch re-checks the whole audit chain as GET /v1/audit does (hashes,
// links, the log's head, every key the backend holds accounted for), so a
// broken chain pages someone (the keyd_audit_chain_valid gauge) without an
// auditor asking. A chain that cannot be read keeps the last verdict (the
// backend's own gauges say it is down).
type chainWatch struct {
	valid   func(context.Context) (bool, error)
	log     *slog.Logger
	invalid atomic.Bool
}

// Valid is the verdict of the last check that could read the chain (true
// before the first).
func (w *chainWatch) Valid() bool { return !w.invalid.Load() }

// check re-checks the chain and logs a change of verdict.
func (w *chainWatch) check(ctx context.Context) {
	if w.valid == nil {
		return // the mode's trail is not re-checked
	}
	valid, err := w.valid(ctx)
	if err != nil {
		w.log.Debug("audit chain check: cannot read the chain", "err", err)
		return
	}
	switch was := w.invalid.Swap(!valid); {
	case !valid && !was:
		w.log.Error("audit chain check: the chain does not verify; run keyd audit verify for the details")
	case valid && was:
		w.log.Info("audit chain check: the chain verifies again")
	}
}

// run checks every interval until ctx ends.
func (w *chainWatch) run(ctx context.Context, c clock.Clock, every time.Duration) {
	clock.Every(ctx, c, every, func() { w.check(ctx) })
}
