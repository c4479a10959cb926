// Health: the lifecycle part of /readyz and the metrics' view of the loop.

package rotation

import "time"

// Health is the lifecycle part of /readyz.
type Health struct {
	BackendUp      bool   `json:"backend_up"`
	LastError      string `json:"last_error,omitempty"`
	ConfigMismatch string `json:"config_mismatch,omitempty"`
	RotationDue    bool   `json:"rotation_overdue"`
	NextTransition string `json:"next_transition,omitempty"`
	ActiveVersion  int    `json:"active_version,omitempty"`
	// Failing is the step the loop is backing off from (absent when healthy).
	Failing *Failure `json:"failing,omitempty"`
	// EmergencyPending is an emergency rotation not yet complete: the keys
	// up to its version do not sign meanwhile.
	EmergencyPending *EmergencyStatus `json:"emergency_pending,omitempty"`
	// LastRefresh is when the keys of the snapshot last published (the
	// JWKS served) were read; a read followed by a failed step publishes
	// nothing and does not count. Stale says it is longer ago than
	// Config.StaleAfter: the snapshot may miss a key other replicas sign
	// with (/readyz answers 503).
	LastRefresh string `json:"last_refresh,omitempty"`
	Stale       bool   `json:"stale"`
}

// Health reports backend, rotation and configuration health.
func (m *Manager) Health() Health {
	h := Health{BackendUp: m.backendUp.Load(), Failing: m.retry.failure.Load(), EmergencyPending: m.compromise.held.Load()}
	if e := m.retry.lastErr.Load(); e != nil {
		h.LastError = *e
	}
	now := m.cfg.Clock.Now()
	if n := m.published.Load(); n != 0 {
		last := time.Unix(0, n).UTC()
		h.LastRefresh = last.Format(time.RFC3339Nano)
		h.Stale = m.cfg.StaleAfter > 0 && now.Sub(last) > m.cfg.StaleAfter
	}
	if s := m.snap.Load(); s != nil {
		h.ConfigMismatch = s.Plan.Mismatch
		h.RotationDue = m.Overdue(now)
		if !s.Plan.NextTransition.IsZero() {
			h.NextTransition = s.Plan.NextTransition.Format(time.RFC3339)
		}
		if s.HasActive {
			h.ActiveVersion = s.Signing.Version
		}
	}
	return h
}

// ActiveKeyAge implements metrics.Lifecycle.
func (m *Manager) ActiveKeyAge(now time.Time) time.Duration {
	s := m.snap.Load()
	if s == nil || s.Plan.Active == nil {
		return 0
	}
	return now.Sub(s.Plan.Active.ActivatesAt)
}

// UntilNextTransition implements metrics.Lifecycle.
func (m *Manager) UntilNextTransition(now time.Time) time.Duration {
	s := m.snap.Load()
	if s == nil || s.Plan.NextTransition.IsZero() {
		return 0
	}
	return s.Plan.NextTransition.Sub(now)
}

// Overdue implements metrics.Lifecycle: a transition was due more than two
// refresh intervals ago and has not happened.
func (m *Manager) Overdue(now time.Time) bool {
	s := m.snap.Load()
	if s == nil {
		return false
	}
	late := now.Add(-2 * m.cfg.Refresh)
	return (s.Plan.RotationDue && s.Plan.NextRotation.Before(late)) ||
		(!s.Plan.NextTransition.IsZero() && s.Plan.NextTransition.Before(late))
}

// ConfigMismatch implements metrics.Lifecycle.
func (m *Manager) ConfigMismatch() bool {
	s := m.snap.Load()
	return s != nil && s.Plan.Mismatch != ""
}

// BackendUp implements metrics.Lifecycle.
func (m *Manager) BackendUp() bool { return m.backendUp.Load() }

// Backoff implements metrics.Lifecycle: the backoff of the failing step.
func (m *Manager) Backoff() time.Duration {
	if f := m.retry.failure.Load(); f != nil {
		return f.Backoff
	}
	return 0
}

// EmergencyPending implements metrics.Lifecycle.
func (m *Manager) EmergencyPending() (pending, stored bool) {
	if st := m.compromise.held.Load(); st != nil {
		return true, st.Stored
	}
	return false, false
}
