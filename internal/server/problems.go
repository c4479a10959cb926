package server

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openedx-keyd/keyd/internal/clock"
)

// problemWatch polls what the stores report wrong with the files they keep
// (a key file set aside in the quarantine, a line of audit.log that is not an
// event, a log that disagrees with the head recorded beside the keys): each
// new one is logged at error level, the current list shows in /readyz and as
// the keyd_storage_problems gauge. keyd keeps serving meanwhile.
type problemWatch struct {
	list func() []string // nil: the mode reports none
	log  *slog.Logger
	cur  atomic.Pointer[[]string]
}

func newProblemWatch(list func() []string, log *slog.Logger, reg prometheus.Registerer) *problemWatch {
	w := &problemWatch{list: list, log: log}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyd_storage_problems",
		Help: "Problems with the files keyd keeps (quarantined key and propagation files, audit lines that are not events, an audit log that disagrees with its recorded head, malformed propagation entries in Vault KV); /readyz lists them.",
	}, func() float64 { return float64(len(w.Current())) }))
	return w
}

// Current is the list as of the last check.
func (w *problemWatch) Current() []string {
	if p := w.cur.Load(); p != nil {
		return *p
	}
	return nil
}

// check refreshes the list and logs what is new.
func (w *problemWatch) check() {
	if w.list == nil {
		return
	}
	now := w.list()
	old := w.Current()
	for _, p := range now {
		if !slices.Contains(old, p) {
			w.log.Error("storage problem: keyd keeps serving what is sound", "problem", p)
		}
	}
	for _, p := range old {
		if !slices.Contains(now, p) {
			w.log.Info("storage problem resolved", "problem", p)
		}
	}
	w.cur.Store(&now)
}

// run checks every interval until ctx ends.
func (w *problemWatch) run(ctx context.Context, every time.Duration) {
	if w.list == nil {
		return
	}
	clock.Every(ctx, clock.Real{}, every, w.check)
}
