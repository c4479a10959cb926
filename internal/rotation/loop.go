// The loop: ticks on the clock, and the bounded backoff of a failing step.

package rotation

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
)

// Failure is the failing step of the lifecycle loop.
type Failure struct {
	Op       string        `json:"op"`
	Error    string        `json:"error"`
	Since    time.Time     `json:"since"`
	Failures int           `json:"consecutive_failures"`
	Backoff  time.Duration `json:"-"`
	RetryAt  time.Time     `json:"retry_at"`
	action   bool          // a create, destroy, pin or emergency step (else a read)
}

// Run ticks until ctx ends: at every refresh interval, at the next due
// transition, and when kicked. After a failed tick it waits out the backoff
// (failures are logged once per change of state, in failed).
func (m *Manager) Run(ctx context.Context) {
	for {
		_ = m.Tick(ctx)
		wait := m.nextWait(m.cfg.Clock.Now())
		select {
		case <-ctx.Done():
			return
		case <-m.cfg.Clock.After(wait):
		case <-m.kick:
		}
	}
}

// nextWait is how long Run sleeps: until the refresh interval, the next
// transition, or, while a step fails, the end of its backoff. A transition
// already in the past (the tick that should have made it failed) never
// makes the loop spin: the backoff decides.
func (m *Manager) nextWait(now time.Time) time.Duration {
	wait := m.cfg.Refresh
	if s := m.snap.Load(); s != nil && !s.Plan.NextTransition.IsZero() {
		if d := s.Plan.NextTransition.Sub(now); d < wait {
			wait = max(d, 0)
		}
	}
	if f := m.retry.failure.Load(); f != nil {
		if r := f.RetryAt.Sub(now); wait < r {
			wait = min(r, m.cfg.Refresh) // an action's backoff still lets reads go on
		}
	}
	return wait
}

// Kick asks Run for an immediate tick.
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Refresh re-reads the backend unless a snapshot newer than since exists:
// the sign path calls it when the backend refuses a version that another
// replica has just retired, so concurrent callers share one re-read. It
// only reads: a sign request never creates, destroys or pins a key, nor
// records an event; the loop's next tick applies what the keys now show.
func (m *Manager) Refresh(ctx context.Context, since time.Time) error {
	// A tick may hold the lock for as long as the backend hangs (a
	// partition): the sign request waits no longer than its own budget.
	if err := m.mu.LockCtx(ctx); err != nil {
		return fmt.Errorf("rotation: read backend: %w", err)
	}
	defer m.mu.Unlock()
	if s := m.snap.Load(); s != nil && s.At.After(since) {
		return nil
	}
	if f := m.retry.failure.Load(); f != nil && !f.action && m.cfg.Clock.Now().Before(f.RetryAt) {
		return errors.New("rotation: read backend: " + f.Error) // backing off: no re-read per request
	}
	return m.readLocked(ctx)
}

// readLocked reads the emergency intent and the keys and stores the
// snapshot they show, changing nothing in the backend or the trail. A
// stored intent stops its compromised keys signing here at once.
func (m *Manager) readLocked(ctx context.Context) error {
	in, err := m.cfg.Backend.LoadIntent(ctx)
	if err != nil {
		return m.readFailed(ctx, "load_intent", err)
	}
	if in != nil {
		m.compromised(in.After)
	}
	_, plan, now, err := m.readPlan(ctx)
	if err != nil {
		return err
	}
	m.store(plan, now)
	if f := m.retry.failure.Load(); f != nil && !f.action {
		m.recovered() // the read that failed works again
	}
	return nil
}

// actionAllowed: no failed action is waiting out its backoff.
func (m *Manager) actionAllowed() bool { return m.retry.actionAllowed(m.cfg.Clock.Now()) }

// Backoff bounds: a failed read is retried no less often than the refresh
// interval (so the snapshot is never staler than configured once the
// backend answers); a failed action backs off up to maxActionBackoff.
const (
	minBackoff       = time.Second
	maxActionBackoff = 5 * time.Minute
)

// actionFailed records a failed create, destroy, pin or emergency step: it
// backs off, and the first failure of a kind is a rotation_failed event.
func (m *Manager) actionFailed(ctx context.Context, op string, version int, err error) error {
	m.cfg.Metrics.Rotation("failed")
	m.cfg.Metrics.BackendError(op)
	if m.failed(ctx, op, err, true, op != "settle") {
		m.reportFailure(ctx, Event{Type: audit.RotationFailed, Version: version, Actor: "scheduler", Reason: op + ": " + err.Error()})
	}
	return fmt.Errorf("rotation: %s: %w", op, err)
}

// readFailed records a backend that cannot be read, and backs off.
func (m *Manager) readFailed(ctx context.Context, op string, err error) error {
	m.backendUp.Store(false)
	m.cfg.Metrics.BackendError(op)
	m.failed(ctx, op, err, false, false)
	return fmt.Errorf("rotation: read backend: %w", err)
}

// failed enters or extends the failure state: a bounded exponential backoff,
// a log line when the state changes (not on every tick), the metrics. It
// reports whether the state changed and event asks for an audit event.
func (m *Manager) failed(ctx context.Context, op string, err error, action, event bool) bool {
	m.cfg.Metrics.LifecycleFailure(op)
	f, changed := m.retry.fail(m.cfg.Clock.Now(), op, err, action)
	if changed {
		m.cfg.Logger.Warn("lifecycle step failing; backing off", "op", op, "err", err, "retry_in", f.Backoff, "consecutive_failures", f.Failures)
	} else {
		m.cfg.Logger.Debug("lifecycle step still failing", "op", op, "retry_in", f.Backoff, "consecutive_failures", f.Failures)
	}
	return changed && event
}

// backoff is the loop's failure state: the failing step with its bounded
// exponential backoff (nil while the last tick succeeded) and the error
// Health shows. Written under the manager's mu, read by anyone.
type backoff struct {
	refresh time.Duration // the refresh interval: a failed read's bound
	failure atomic.Pointer[Failure]
	lastErr atomic.Pointer[string]
}

// fail enters or extends the failure state at now with a failed read or
// action (a create, destroy, pin or emergency step): the backoff doubles
// from min(minBackoff, refresh) up to the refresh interval, or up to
// maxActionBackoff once an action failed. It reports whether the state
// changed (another step or another error).
func (b *backoff) fail(now time.Time, op string, err error, action bool) (*Failure, bool) {
	msg := "rotation: " + op + ": " + err.Error()
	if !action {
		msg = "rotation: read backend: " + err.Error()
	}
	b.lastErr.Store(&msg)
	prev := b.failure.Load()
	f := &Failure{Op: op, Error: err.Error(), Since: now, Failures: 1, Backoff: min(minBackoff, b.refresh), action: action}
	if prev != nil {
		f.Since, f.Failures = prev.Since, prev.Failures+1
		f.Backoff = 2 * prev.Backoff
		f.action = action || prev.action
	}
	limit := b.refresh
	if f.action {
		limit = max(limit, maxActionBackoff)
	}
	f.Backoff = min(max(f.Backoff, min(minBackoff, b.refresh)), limit)
	f.RetryAt = now.Add(f.Backoff)
	b.failure.Store(f)
	return f, prev == nil || prev.Op != op || prev.Error != f.Error
}

// clear leaves the failure state and returns the one left (nil: none).
func (b *backoff) clear() *Failure {
	b.lastErr.Store(nil)
	return b.failure.Swap(nil)
}

// actionAllowed: no failed action is waiting out its backoff at now.
func (b *backoff) actionAllowed(now time.Time) bool {
	f := b.failure.Load()
	return f == nil || !f.action || !now.Before(f.RetryAt)
}

// recovered leaves the failure state after a tick that did all it had to.
func (m *Manager) recovered() {
	if f := m.retry.clear(); f != nil {
		m.cfg.Logger.Info("lifecycle recovered", "op", f.Op, "failed_for", m.cfg.Clock.Now().Sub(f.Since), "consecutive_failures", f.Failures)
	}
}
