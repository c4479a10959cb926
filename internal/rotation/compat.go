// Compatibility names for the event vocabulary, which internal/audit owns:
// internal/api's tests still name these; delete the file once they say
// audit.Type, audit.Activated and so on.

package rotation

import "github.com/openedx-keyd/keyd/internal/audit"

// EventType is audit.Type (a compatibility name).
type EventType = audit.Type

// Compatibility names of audit's event types.
const (
	EventActivated             = audit.Activated
	EventPropagationConfirmed  = audit.PropagationConfirmed
	EventActivationUnconfirmed = audit.ActivationUnconfirmed
)
