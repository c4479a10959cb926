package server

import (
	"context"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/rotation"
)

// AuditEvents is the lifecycle's event sink that records each transition
// in the audit chain l.
func AuditEvents(l *audit.Log) rotation.Events { return auditEvents{l} }

type auditEvents struct{ log *audit.Log }

func (a auditEvents) Emit(ctx context.Context, e rotation.Event) error {
	_, err := a.log.Record(ctx, audit.Event{
		Type: e.Type, KID: e.KID, Version: e.Version, Actor: e.Actor, Reason: e.Reason,
	})
	return err
}
