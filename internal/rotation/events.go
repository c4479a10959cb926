// The event outbox: the lifecycle transitions sent to the audit trail, sent
// once per process and queued for the next tick while the trail refuses them.

package rotation

import (
	"cmp"
	"context"
	"log/slog"

	"github.com/openedx-keyd/keyd/internal/audit"
)

// Event is one lifecycle transition for the audit trail. Its Type is one of
// the trail's event types (audit.Types, the contract's "type" of GET
// /v1/audit): audit.Bootstrap, Created, Activated, Retired, Destroyed,
// Emergency, RotationFailed, PropagationConfirmed or ActivationUnconfirmed.
type Event struct {
	Type    audit.Type
	Version int
	KID     string
	Actor   string
	Reason  string
}

// key is e's identity under the trail's one deduplication rule (audit.KeyOf).
func (e Event) key() audit.Key { return audit.KeyOf(e.Type, e.Version, e.Reason) }

// Events receives every transition; the audit trail deduplicates them on
// their audit.KeyOf, so sending one twice is harmless.
type Events interface {
	Emit(ctx context.Context, e Event) error
}

// creationEvent is the event that records a key's creation.
func creationEvent(p Published) Event {
	e := Event{Type: audit.Created, Version: p.Version, KID: p.KID, Actor: p.Actor, Reason: p.Reason}
	switch {
	case p.Emergency:
		e.Type = audit.Emergency
	case p.Version == 1:
		e.Type = audit.Bootstrap
	}
	e.Actor = cmp.Or(e.Actor, "scheduler")
	return e
}

// outbox sends events to the trail once per process (by audit.KeyOf; the
// trail dedupes across replicas) and keeps those the trail refused for the
// next flush. Not safe for concurrent use: the manager calls it under mu.
type outbox struct {
	events Events
	logger *slog.Logger
	sent   map[audit.Key]bool
	unsent map[audit.Key]Event // events the trail could not take yet
}

func newOutbox(events Events, logger *slog.Logger) *outbox {
	return &outbox{events: events, logger: logger, sent: map[audit.Key]bool{}, unsent: map[audit.Key]Event{}}
}

// send sends e unless it was sent; one the trail refuses is queued.
func (o *outbox) send(ctx context.Context, e Event) {
	k := e.key()
	if o.sent[k] {
		return
	}
	if err := o.events.Emit(ctx, e); err != nil {
		o.logger.Error("audit event not recorded; retrying next tick", "type", e.Type, "version", e.Version, "err", err)
		if _, queued := o.unsent[k]; !queued {
			o.unsent[k] = e
		}
		return
	}
	o.sent[k] = true
	delete(o.unsent, k)
}

// recorded reports whether the trail took e.
func (o *outbox) recorded(e Event) bool { return o.sent[e.key()] }

// flush retries the events the trail could not take: a destruction is not
// observable again once it has happened, so its event must not be lost.
func (o *outbox) flush(ctx context.Context) {
	for _, e := range o.unsent {
		o.send(ctx, e)
	}
}

// sendOnce sends e and reports whether the trail took it, then forgets it
// was sent, so that the next failure with the same key is sent again (a
// rotation_failed event: the trail keeps one per version and reason).
func (o *outbox) sendOnce(ctx context.Context, e Event) bool {
	o.send(ctx, e)
	ok := o.sent[e.key()]
	delete(o.sent, e.key())
	return ok
}

// emit sends e through the outbox.
func (m *Manager) emit(ctx context.Context, e Event) { m.out.send(ctx, e) }

// reportFailure sends a rotation_failed event and reports whether the trail
// took it; one it cannot take is queued and retried by the next ticks.
func (m *Manager) reportFailure(ctx context.Context, e Event) bool { return m.out.sendOnce(ctx, e) }
