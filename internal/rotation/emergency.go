// The emergency coordinator: an emergency rotation from the request, through
// its stored intent, to its completion on whichever replica gets there first.

package rotation

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// heldIntent is an emergency this process requested and has not completed.
type heldIntent struct {
	in     signer.Intent
	stored bool // SaveIntent succeeded: every replica sees and completes it
}

// EmergencyStatus is an emergency rotation that has not completed.
type EmergencyStatus struct {
	After  int       `json:"compromised_up_to_version"`
	Reason string    `json:"reason"`
	Actor  string    `json:"actor"`
	Since  time.Time `json:"since"`
	// Stored is false while the intent is held only in this process's
	// memory: other replicas do not know of it and a restart forgets it.
	Stored    bool   `json:"intent_stored"`
	LastError string `json:"last_error,omitempty"`
}

// EmergencyError is an emergency rotation that did not complete, with what
// was kept of it, so that the answer can say exactly that.
type EmergencyError struct {
	// Stored: the intent is in the backend, so every replica refuses the
	// compromised keys and completes the emergency. Otherwise it is held
	// in this process's memory only (and retried by its loop).
	Stored bool
	// Audited: a rotation_failed event is in the audit trail.
	Audited bool
	Err     error
}

func (e *EmergencyError) Error() string {
	return "rotation: emergency rotation incomplete: " + e.Err.Error()
}

func (e *EmergencyError) Unwrap() error { return e.Err }

// followIntent reconciles the stored emergency intent in with the one held
// here and returns the emergency to complete, if any: a held one another
// replica completed is forgotten, one that could not be stored is stored
// now (when actions are allowed), one another replica stored is adopted.
func (m *Manager) followIntent(ctx context.Context, in *signer.Intent, allowed bool) *signer.Intent {
	switch h := m.held; {
	case in == nil && h != nil && h.stored:
		m.emergencyDone(h.in.After) // another replica completed it
	case in == nil && h != nil && allowed:
		// An emergency whose intent could not be stored: store it now, so
		// every replica sees it; complete it from memory meanwhile.
		if err := m.cfg.Backend.SaveIntent(ctx, h.in); err != nil {
			m.setHeld(h, fmt.Errorf("store intent: %w", err))
		} else {
			h.stored = true
			m.setHeld(h, nil)
			m.cfg.Logger.Warn("emergency intent stored", "compromised_up_to_version", h.in.After)
		}
		in = &h.in
	case in != nil && (h == nil || h.in.After < in.After):
		// Stored by another replica, or before a restart.
		m.held = &heldIntent{in: *in, stored: true}
		m.setHeld(m.held, nil)
	}
	return in
}

// emergency runs an on-demand emergency rotation. From the moment it is
// asked for, the keys it replaces stop signing in this process (fail
// closed); the intent is stored so that every replica does the same and a
// crash completes it. An intent that cannot be stored is held in memory and
// the loop keeps trying to store and complete it. The key is created even
// when the intent could not be stored: its own record marks it emergency,
// so once it exists the rules destroy every older key on every replica.
func (m *Manager) emergency(ctx context.Context, in signer.Intent) (int, error) {
	h := &heldIntent{in: in}
	m.held = h
	m.compromised(in.After)
	m.setHeld(h, nil)
	m.cfg.Logger.Warn("emergency rotation requested: the current keys no longer sign", "compromised_up_to_version", in.After, "reason", in.Reason, "actor", in.Actor)
	fail := func(step string, err error) (int, error) {
		err = fmt.Errorf("%s: %w", step, err)
		m.setHeld(h, err)
		m.cfg.Metrics.Rotation("failed")
		_ = m.failed(ctx, "emergency", err, true, false)
		audited := m.reportFailure(ctx, Event{Type: audit.RotationFailed, Version: in.After + 1, Actor: in.Actor,
			Reason: "emergency (" + in.Reason + "): " + err.Error()})
		m.cfg.Logger.Error("emergency rotation incomplete; the compromised keys do not sign until it completes",
			"step", step, "intent_stored", h.stored, "audited", audited, "err", err)
		return 0, &EmergencyError{Stored: h.stored, Audited: audited, Err: err}
	}
	if err := m.cfg.Backend.SaveIntent(ctx, in); err != nil {
		if v, cerr := m.completeEmergency(ctx, in); cerr == nil {
			// Done without a stored intent: the key's record holds the emergency.
			m.cfg.Logger.Warn("emergency intent could not be stored; the emergency completed all the same", "err", err)
			m.emergencyDone(in.After)
			m.cfg.Metrics.Rotation("emergency")
			return v, nil
		}
		return fail("store intent", err)
	}
	h.stored = true
	m.setHeld(h, nil)
	v, err := m.completeEmergency(ctx, in)
	if err != nil {
		return fail("complete", err)
	}
	m.emergencyDone(in.After)
	m.cfg.Metrics.Rotation("emergency")
	return v, nil
}

// compromise is what the sign path reads of pending emergencies: the
// versions they compromised and the emergency held here, whose keys never
// sign again. Safe for concurrent use.
type compromise struct {
	// below: versions below it belong to a pending emergency (one
	// requested here, or an intent any replica stored). It only grows.
	below atomic.Int64
	// held mirrors the manager's held emergency (nil: none).
	held atomic.Pointer[EmergencyStatus]
}

// mark makes every version up to after compromised.
func (c *compromise) mark(after int) { raise(&c.below, int64(after+1)) }

// refuses: version v of s must not sign. It is compromised by version, or
// was created before the pending emergency held here was asked for,
// although its version may be above the intent's (a key the snapshot of a
// replica that could not read the keys did not show).
func (c *compromise) refuses(s *Snapshot, v int) bool {
	if int64(v) < c.below.Load() {
		return true
	}
	h := c.held.Load()
	if h == nil {
		return false
	}
	for _, p := range s.Keys {
		if p.Version == v {
			return predates(p.CreatedAt, h.Since)
		}
	}
	return false
}

// predates: a key created at created existed before an emergency asked for
// at asked (records keep whole seconds: a key of the same second counts as
// made for it).
func predates(created, asked time.Time) bool {
	return created.Before(asked.Truncate(time.Second))
}

// compromised marks every version up to after as no longer signing.
func (m *Manager) compromised(after int) { m.compromise.mark(after) }

// setHeld publishes the state of an emergency held here (nil h: none).
func (m *Manager) setHeld(h *heldIntent, err error) {
	if h == nil {
		m.compromise.held.Store(nil)
		return
	}
	st := &EmergencyStatus{After: h.in.After, Reason: h.in.Reason, Actor: h.in.Actor, Since: h.in.At, Stored: h.stored}
	if err != nil {
		st.LastError = err.Error()
	}
	m.compromise.held.Store(st)
}

// emergencyDone forgets a completed emergency (and any older one held here).
func (m *Manager) emergencyDone(after int) {
	if m.held != nil && m.held.in.After <= after {
		m.cfg.Logger.Warn("emergency rotation completed", "compromised_up_to_version", m.held.in.After)
		m.held = nil
		m.setHeld(nil, nil)
	}
}

// completeEmergency finishes an emergency: the key above in.After, marked
// emergency and active at once, then every older key destroyed, then the
// intent cleared. Each step is idempotent, so a crash resumes here.
func (m *Manager) completeEmergency(ctx context.Context, in signer.Intent) (int, error) {
	keys, err := m.cfg.Backend.Keys(ctx)
	if err != nil {
		return 0, err
	}
	em := 0
	for _, k := range keys {
		if k.Version > in.After && k.Emergency && !predates(k.CreatedAt, in.At) {
			em = k.Version // made for this intent (an older emergency key is compromised too)
		}
	}
	if em == 0 {
		newest := in.After
		if len(keys) > 0 {
			newest = max(newest, keys[len(keys)-1].Version)
		}
		rec := NewRecord(newest+1, m.cfg.Algorithm, m.cfg.Rules, m.cfg.Clock.Now(), true)
		rec.Actor, rec.Reason = in.Actor, in.Reason
		k, err := m.cfg.Backend.Create(ctx, rec)
		if err != nil {
			return 0, fmt.Errorf("rotation: create emergency key: %w", err)
		}
		em = k.Version
		m.cfg.Logger.Warn("emergency key created", "version", em, "reason", in.Reason, "actor", in.Actor)
		m.emit(ctx, creationEvent(Published{KeyState: KeyState{Key: k}, KID: m.kid(k)}))
	}
	if err := m.cfg.Backend.PinSigning(ctx, em); err != nil {
		return 0, fmt.Errorf("rotation: pin emergency key: %w", err)
	}
	m.pinned = max(m.pinned, em)
	if err := m.destroy(ctx, keys, em, in.Actor, "emergency: "+in.Reason); err != nil {
		return 0, fmt.Errorf("rotation: destroy keys older than emergency key %d: %w", em, err)
	}
	if err := m.cfg.Backend.ClearIntent(ctx); err != nil {
		return 0, fmt.Errorf("rotation: clear emergency intent: %w", err)
	}
	return em, nil
}
