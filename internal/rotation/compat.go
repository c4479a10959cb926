// Compatibility names for the event vocabulary, which internal/audit owns.

package rotation

import "github.com/openedx-keyd/keyd/internal/audit"

// EventType is audit.Type.
//
// Deprecated: use audit.Type; kept only while internal/api's tests name it.
type EventType = audit.Type

// The lifecycle event types still named through this package.
//
// Deprecated: use audit.Activated, audit.PropagationConfirmed and
// audit.ActivationUnconfirmed; kept only while internal/api's tests name them.
const (
	EventActivated             = audit.Activated
	EventPropagationConfirmed  = audit.PropagationConfirmed
	EventActivationUnconfirmed = audit.ActivationUnconfirmed
)
