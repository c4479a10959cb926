package main

import (
	"slices"
	"testing"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/rotation"
)

// TestEventTypesAreAuditTypes: every lifecycle event becomes an audit event
// of a type the trail accepts.
func TestEventTypesAreAuditTypes(t *testing.T) {
	for _, typ := range rotation.EventTypes {
		if !slices.Contains(audit.Types, auditType(typ)) {
			t.Errorf("lifecycle event %q is not an audit event type", typ)
		}
	}
}
