// The event outbox: the lifecycle transitions sent to the audit trail, sent
// once per process and queued for the next tick while the trail refuses them.

package rotation

import (
	"cmp"
	"context"
	"fmt"
)

// EventType is the kind of a lifecycle transition. The values are the
// audit trail's event types (the contract's "type" of GET /v1/audit).
type EventType string

// The lifecycle events: each transition is one.
const (
	EventBootstrap      EventType = "bootstrap"       // the first key, active at once
	EventCreated        EventType = "created"         // a key created by a normal rotation
	EventActivated      EventType = "activated"       // a key started signing
	EventRetired        EventType = "retired"         // a key stopped signing (verify-only)
	EventDestroyed      EventType = "destroyed"       // a key's private material is gone
	EventEmergency      EventType = "emergency"       // a key created by an emergency rotation
	EventRotationFailed EventType = "rotation_failed" // a create, destroy, pin or emergency step failed
	// EventPropagationConfirmed: a client holds a version (reason: the client, fetch or admin).
	EventPropagationConfirmed EventType = "propagation_confirmed"
	// EventActivationUnconfirmed: a gated key activated at its max wait (reason: the clients not confirmed).
	EventActivationUnconfirmed EventType = "activation_unconfirmed"
)

// EventTypes lists every lifecycle event type.
var EventTypes = []EventType{EventBootstrap, EventCreated, EventActivated, EventRetired, EventDestroyed, EventEmergency, EventRotationFailed,
	EventPropagationConfirmed, EventActivationUnconfirmed}

// Event is one lifecycle transition for the audit trail.
type Event struct {
	Type    EventType
	Version int
	KID     string
	Actor   string
	Reason  string
}

// Events receives every transition; the audit trail deduplicates them on
// (type, version), so sending one twice is harmless.
type Events interface {
	Emit(ctx context.Context, e Event) error
}

// creationEvent is the event that records a key's creation.
func creationEvent(p Published) Event {
	e := Event{Type: EventCreated, Version: p.Version, KID: p.KID, Actor: p.Actor, Reason: p.Reason}
	switch {
	case p.Emergency:
		e.Type = EventEmergency
	case p.Version == 1:
		e.Type = EventBootstrap
	}
	e.Actor = cmp.Or(e.Actor, "scheduler")
	return e
}

func (e Event) id() string {
	if e.Type == EventPropagationConfirmed { // one per client and version
		return fmt.Sprintf("%s/%d/%s", e.Type, e.Version, e.Reason)
	}
	return fmt.Sprintf("%s/%d", e.Type, e.Version)
}

// emit sends an event once per process; the trail dedupes across replicas.
func (m *Manager) emit(ctx context.Context, e Event) {
	id := e.id()
	if m.emitted[id] {
		return
	}
	if err := m.cfg.Events.Emit(ctx, e); err != nil {
		m.cfg.Logger.Error("audit event not recorded; retrying next tick", "type", e.Type, "version", e.Version, "err", err)
		if _, queued := m.unsent[id]; !queued {
			m.unsent[id] = e
		}
		return
	}
	m.emitted[id] = true
	delete(m.unsent, id)
}

// flushUnsent retries the events the trail could not take: a destruction is
// not observable again once it has happened, so its event must not be lost.
func (m *Manager) flushUnsent(ctx context.Context) {
	for _, e := range m.unsent {
		m.emit(ctx, e)
	}
}

// reportFailure sends a rotation_failed event and reports whether the trail
// took it; one it cannot take is queued and retried by the next ticks.
func (m *Manager) reportFailure(ctx context.Context, e Event) bool {
	id := e.id()
	m.emit(ctx, e)
	ok := m.emitted[id]
	delete(m.emitted, id) // each new failure of this version is reported again
	return ok
}
