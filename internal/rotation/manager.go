// The manager: the lifecycle's one writer in this process. It reads the
// backend, applies the rules' next step (create, record, destroy, pin) and
// publishes the snapshot; the loop (loop.go), the emergency coordinator
// (emergency.go) and the event outbox (events.go) are its parts.

package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/metrics"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// Backend is what the lifecycle needs from a key backend.
type Backend interface {
	Keys(ctx context.Context) ([]signer.Key, error)
	Create(ctx context.Context, rec signer.Record) (signer.Key, error)
	PinSigning(ctx context.Context, v int) error
	DestroyBelow(ctx context.Context, v int) error
	SaveIntent(ctx context.Context, in signer.Intent) error
	LoadIntent(ctx context.Context) (*signer.Intent, error)
	ClearIntent(ctx context.Context) error
}

// Config wires a Manager.
type Config struct {
	Backend   Backend
	Rules     Rules
	Algorithm signer.Algorithm // of the next key created
	Clock     clock.Clock      // default clock.Real
	Events    Events           // required
	Logger    *slog.Logger     // default slog.Default
	Metrics   *metrics.Metrics // may be nil
	// Refresh is how often the backend is re-read (other replicas' changes).
	Refresh time.Duration
	// OnChange is called with each new snapshot (to rebuild the JWKS).
	OnChange func(*Snapshot)
	// Propagation is the shared store of observed propagation, where gated
	// keys find their confirmations and write their activation. Nil: a
	// gated key never activates (set it whenever Rules.ExpectedClients may
	// be, or may have been, set).
	Propagation PropagationStore
	// StaleAfter is how long after the last publication of a snapshot
	// (counted from when its keys were read) it may be missing a key other
	// replicas sign with
	// (propagation-delay - jwks-max-age): Health says Stale past it. Zero:
	// never stale.
	StaleAfter time.Duration
}

// Manager applies the rules: the cron-driven loop, on-demand rotation, and
// the snapshot that the sign path and the JWKS read.
type Manager struct {
	cfg  Config
	mu   ctxMutex // serialises Tick, Rotate, Confirm and Refresh in this process
	kick chan struct{}

	// The writer's state, under mu.
	kids   map[int]string
	pinned int
	// observed is the propagation last read; written activations are
	// immutable and kept.
	observed Observed
	// held is an emergency requested or adopted here that has not
	// completed (emergency.go); compromise mirrors it for the sign path,
	// Health and the metrics.
	held *heldIntent
	out  *outbox // events on their way to the audit trail (events.go)

	// The read side (snapshot.go), read by anyone.
	snap atomic.Pointer[Snapshot]
	// lastSigned holds, by version, when this process last signed with it
	// (*atomic.Int64, Unix nanoseconds): retirement counts from it.
	lastSigned sync.Map
	compromise compromise // the keys pending emergencies stop (emergency.go)

	// Health (loop.go, health.go), read by anyone.
	retry     backoff // the failing step of the loop and its backoff
	backendUp atomic.Bool
	// published is when the keys of the snapshot last published (and
	// handed to OnChange) were read, Unix nanoseconds: staleness counts
	// from it, not from the last read, which may be followed by a failed
	// step and no new snapshot.
	published atomic.Int64
}

// ctxMutex is a mutex whose Lock a waiter can give up (make it with
// capacity 1).
type ctxMutex chan struct{}

func (c ctxMutex) Lock() { c <- struct{}{} }

func (c ctxMutex) Unlock() { <-c }

// LockCtx locks c, or returns ctx's error when ctx ends first.
func (c ctxMutex) LockCtx(ctx context.Context) error {
	select {
	case c <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Errors callers branch on.
var (
	// ErrNoKey is returned when there is no active key yet.
	ErrNoKey = errors.New("rotation: no active key yet")
	// ErrConfigMismatch refuses a normal rotation on a replica whose
	// settings differ from the newest key's, unless it adopts them.
	ErrConfigMismatch = errors.New("rotation: this replica's settings differ from the newest key's")
	// ErrEmergencyPending refuses to sign with a key that a pending
	// emergency rotation replaces: it is known compromised.
	ErrEmergencyPending = errors.New("rotation: an emergency rotation is pending; the compromised key no longer signs")
)

// RotateRequest is an on-demand rotation.
type RotateRequest struct {
	Emergency bool
	Reason    string
	Actor     string
	// AdoptSettings lets a normal rotation create its key under this
	// replica's settings although they differ from the newest key's: the
	// operator's explicit step after changing the settings everywhere.
	AdoptSettings bool
}

// New checks cfg and returns a Manager; call Tick or Run to start it.
func New(cfg Config) (*Manager, error) {
	if cfg.Backend == nil || cfg.Events == nil || cfg.Rules.Schedule == nil {
		return nil, errors.New("rotation: backend, events and schedule are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 10 * time.Second
	}
	m := &Manager{cfg: cfg, mu: make(ctxMutex, 1), kick: make(chan struct{}, 1), kids: map[int]string{}, out: newOutbox(cfg.Events, cfg.Logger)}
	m.retry.refresh = cfg.Refresh
	return m, nil
}

// Tick reads the backend, applies every transition now due and publishes a
// new snapshot. A failed step leaves a state the next tick completes.
func (m *Manager) Tick(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tickLocked(ctx, "scheduler")
}

func (m *Manager) tickLocked(ctx context.Context, actor string) error {
	allowed := m.actionAllowed()
	in, err := m.cfg.Backend.LoadIntent(ctx)
	if err != nil {
		return m.readFailed(ctx, "load_intent", err)
	}
	in = m.followIntent(ctx, in, allowed)
	if in != nil {
		m.compromised(in.After) // any replica's stored intent: its keys stop signing here too
	}
	if in != nil && allowed {
		if _, err := m.completeEmergency(ctx, *in); err != nil {
			if m.held != nil {
				m.setHeld(m.held, err)
			}
			return m.actionFailed(ctx, "emergency", in.After+1, err)
		}
		m.emergencyDone(in.After)
	}
	m.out.flush(ctx)
	return m.settle(ctx, actor, allowed)
}

// readPlan reads the keys and evaluates the rules on them now.
func (m *Manager) readPlan(ctx context.Context) ([]signer.Key, Plan, time.Time, error) {
	keys, err := m.cfg.Backend.Keys(ctx)
	if err != nil {
		return nil, Plan{}, time.Time{}, m.readFailed(ctx, "keys", err)
	}
	if err := m.loadObserved(ctx, keys); err != nil {
		return nil, Plan{}, time.Time{}, m.readFailed(ctx, "propagation", err)
	}
	m.backendUp.Store(true)
	now := m.cfg.Clock.Now()
	return keys, EvaluateObserved(keys, m.cfg.Rules, now, m.signedTimes(), &m.observed), now, nil
}

// settle reads the keys, reports the transitions they show, applies the
// plan's next step and reads again, until nothing is left to do; then it
// publishes the snapshot.
func (m *Manager) settle(ctx context.Context, actor string, allowed bool) error {
	for range 6 { // at most: a record, a confirmation, an activation, a creation, a destruction, then publish
		keys, plan, now, err := m.readPlan(ctx)
		if err != nil {
			return err
		}
		m.reportTransitions(ctx, keys, plan, now) // before any destruction, so the trail stays in order
		m.reportDecisions(ctx, keys)
		acted, err := m.apply(ctx, keys, plan, actor)
		if err != nil {
			return err
		}
		if acted {
			continue
		}
		if err := m.publish(ctx, plan, now); err != nil {
			return m.actionFailed(ctx, "pin", plan.Active.Version, err)
		}
		if f := m.retry.failure.Load(); f == nil || !f.action || allowed {
			m.recovered() // a failed action is cleared only by a tick allowed to retry it
		}
		return nil
	}
	return m.actionFailed(ctx, "settle", 0, errors.New("the keys did not settle after six steps"))
}

// apply performs the plan's create and destroy steps; it reports whether it
// changed the backend (so the caller re-reads).
func (m *Manager) apply(ctx context.Context, keys []signer.Key, plan Plan, actor string) (bool, error) {
	if !m.actionAllowed() {
		return false, nil
	}
	switch {
	case plan.Bootstrap:
		rec := NewRecord(1, m.cfg.Algorithm, m.cfg.Rules, m.cfg.Clock.Now(), false)
		rec.Actor, rec.Reason = actor, "first key"
		if _, err := m.cfg.Backend.Create(ctx, rec); err != nil && !errors.Is(err, signer.ErrAlreadyRotated) {
			return false, m.actionFailed(ctx, "bootstrap", 1, err)
		}
		return true, nil
	case m.writeMissingRecords(ctx, plan):
		return true, nil
	case plan.Gate != nil:
		if acted, err := m.gate(ctx, plan); acted || err != nil {
			return acted, err
		}
	}
	switch {
	case plan.Mismatch != "":
		return false, nil // follow the records, change nothing
	case plan.DestroyBelow > 0:
		if err := m.destroy(ctx, keys, plan.DestroyBelow, "scheduler", ""); err != nil {
			return false, m.actionFailed(ctx, "destroy", plan.DestroyBelow-1, err)
		}
		return true, nil
	case plan.RotationDue:
		next := keys[len(keys)-1].Version + 1
		rec := NewRecord(next, m.cfg.Algorithm, m.cfg.Rules, m.cfg.Clock.Now(), false)
		rec.Actor, rec.Reason = "scheduler", "scheduled rotation"
		k, err := m.cfg.Backend.Create(ctx, rec)
		switch {
		case errors.Is(err, signer.ErrAlreadyRotated):
			m.cfg.Metrics.Rotation("already_rotated")
		case err != nil:
			return false, m.actionFailed(ctx, "rotate", next, err)
		default:
			m.cfg.Metrics.Rotation("created")
			m.cfg.Logger.Info("key created", "version", k.Version, "activates_at", rec.ActivatesAt)
		}
		return true, nil
	}
	return false, nil
}

// RecordWriter is implemented by a backend that can hold a key without its
// lifecycle record (Vault: the first key made by keyd bootstrap, or a crash
// between creating a version and writing its record).
type RecordWriter interface {
	WriteRecord(ctx context.Context, rec signer.Record) error
}

// writeMissingRecords stores the record the rules derived for each published
// key that has none, so that every replica follows one record instead of
// deriving its own from its own settings. It reports whether it wrote any.
func (m *Manager) writeMissingRecords(ctx context.Context, plan Plan) bool {
	rw, ok := m.cfg.Backend.(RecordWriter)
	if !ok {
		return false
	}
	wrote := false
	for _, ks := range plan.Published {
		if ks.HasRecord {
			continue
		}
		rec := ks.Record
		rec.Actor, rec.Reason = "scheduler", "record written after the key (lost to a crash)"
		if ks.Version == 1 {
			rec.Actor, rec.Reason = "keyd bootstrap", "first key"
		}
		switch err := rw.WriteRecord(ctx, rec); {
		case err == nil:
			wrote = true
		case errors.Is(err, signer.ErrAlreadyRotated):
			wrote = true // another replica wrote it: re-read to follow it
		default:
			m.cfg.Logger.Warn("cannot write a missing lifecycle record; using the derived one", "version", ks.Version, "err", err)
			m.cfg.Metrics.BackendError("record")
		}
	}
	return wrote
}

// destroy destroys every version below below. The destroyed events are
// recorded first: a destruction cannot be observed again once done, so a
// crash right after it must not lose them (a retry after a failed destruction
// finds them already in the trail). When the trail refuses them the
// destruction goes ahead all the same (a retired or compromised key must not
// outlive an audit outage) and they stay queued; a crash then shows as a
// version that vanished without a destroyed event, which audit verification
// reports.
func (m *Manager) destroy(ctx context.Context, keys []signer.Key, below int, actor, reason string) error {
	var gone []int
	for _, k := range keys {
		if k.Version < below {
			m.emit(ctx, Event{Type: audit.Destroyed, Version: k.Version, KID: m.kid(k), Actor: actor, Reason: reason})
			gone = append(gone, k.Version)
		}
	}
	if err := m.cfg.Backend.DestroyBelow(ctx, below); err != nil {
		return err
	}
	for _, v := range gone {
		m.cfg.Logger.Info("key destroyed", "version", v)
	}
	return nil
}

// publish stores the snapshot of plan, then pins the active version.
func (m *Manager) publish(ctx context.Context, plan Plan, now time.Time) error {
	s := m.store(plan, now)
	// Rule 4: once a key is active the backend itself refuses older versions.
	if s.HasActive && s.Signing.Version > m.pinned {
		if err := m.cfg.Backend.PinSigning(ctx, s.Signing.Version); err != nil {
			return fmt.Errorf("rotation: pin signing to version %d: %w", s.Signing.Version, err)
		}
		m.pinned = s.Signing.Version
	}
	return nil
}

// reportTransitions sends the events of every transition the plan shows,
// including those of keys about to be destroyed (a replica that was down
// while a key retired still reports it, before the destruction).
func (m *Manager) reportTransitions(ctx context.Context, keys []signer.Key, plan Plan, now time.Time) {
	published := map[int]KeyState{}
	for _, ks := range plan.Published {
		published[ks.Version] = ks
	}
	cut := 0 // versions below an emergency key never retired: they were cut off
	for _, k := range keys {
		if k.Emergency {
			cut = k.Version
		}
	}
	for _, k := range keys {
		ks, ok := published[k.Version]
		if !ok { // to be destroyed now
			ks = KeyState{Key: k, State: Retiring}
			if k.Version < cut {
				ks.State = Pending // no retired event: an emergency cut it off
				_, activated := m.observed.Activations[k.Version]
				ks.Waiting = k.HasRecord && k.Gated() && !activated
			}
		}
		p := Published{KeyState: ks, KID: m.kid(k)}
		m.emit(ctx, creationEvent(p))
		if ks.State != Pending || (!ks.Waiting && !ks.ActivatesAt.After(now)) {
			m.emit(ctx, Event{Type: audit.Activated, Version: p.Version, KID: p.KID, Actor: "scheduler"})
		}
		if ks.State == Retiring {
			reason := "verify-only"
			if !ks.RetiresAt.IsZero() {
				reason += " until " + ks.RetiresAt.Format(time.RFC3339)
			}
			m.emit(ctx, Event{Type: audit.Retired, Version: p.Version, KID: p.KID, Actor: "scheduler", Reason: reason})
		}
	}
}

func (m *Manager) kid(k signer.Key) string {
	if kid, ok := m.kids[k.Version]; ok {
		return kid
	}
	kid, err := signer.KID(k.Public)
	if err != nil {
		m.cfg.Logger.Error("cannot compute kid", "version", k.Version, "err", err)
		return ""
	}
	m.kids[k.Version] = kid
	return kid
}

// Rotate creates a new version on demand. A normal rotation while a key is
// still pending creates nothing and returns the pending key; an emergency
// records its intent, creates a key active at once and destroys every other.
// A normal rotation on a replica whose settings differ from the newest
// key's is refused unless it adopts them; an emergency never is (its key
// signs at once and every older key goes, so no setting can make it unsafe).
func (m *Manager) Rotate(ctx context.Context, req RotateRequest) (Published, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.rotate(ctx, req)
	if err != nil {
		return Published{}, err
	}
	if err := m.tickLocked(ctx, req.Actor); err != nil {
		return Published{}, err
	}
	return m.rotated(v)
}

// rotate performs req (under mu) and returns the version to answer with (0:
// the newest, another replica's).
func (m *Manager) rotate(ctx context.Context, req RotateRequest) (int, error) {
	keys, err := m.cfg.Backend.Keys(ctx)
	if err != nil && !req.Emergency {
		return 0, m.readFailed(ctx, "keys", err)
	}
	newest := 0
	if len(keys) > 0 {
		newest = keys[len(keys)-1].Version
	}
	if !req.Emergency {
		return m.rotateNormal(ctx, keys, newest, req)
	}
	if err != nil { // the keys cannot be read: every key known here is compromised
		if s := m.snap.Load(); s != nil && len(s.Keys) > 0 {
			newest = s.Keys[len(s.Keys)-1].Version
		}
		_ = m.readFailed(ctx, "keys", err)
	}
	return m.emergency(ctx, signer.Intent{After: newest, Reason: req.Reason, Actor: req.Actor, At: m.cfg.Clock.Now()})
}

// rotated is the answer to a rotation of version v: the key asked for, once
// the trail holds its event; after a lost race (v 0), the newest key
// another replica made.
func (m *Manager) rotated(v int) (Published, error) {
	s := m.snap.Load()
	if s == nil || len(s.Keys) == 0 {
		return Published{}, ErrNoKey
	}
	if v == 0 {
		return s.Keys[len(s.Keys)-1], nil
	}
	for _, p := range s.Keys {
		if p.Version != v {
			continue
		}
		// Reported done only once the trail holds the event.
		if !m.out.recorded(creationEvent(p)) {
			return Published{}, fmt.Errorf("rotation: version %d created but its audit event is not recorded yet; it is retried on the next tick", v)
		}
		return p, nil
	}
	return s.Keys[len(s.Keys)-1], nil
}

// rotateNormal creates the version above newest unless one is pending, and
// returns the version to answer with: the new one, newest when it is still
// pending, 0 when another replica created it first (the newest then).
func (m *Manager) rotateNormal(ctx context.Context, keys []signer.Key, newest int, req RotateRequest) (int, error) {
	plan := EvaluateObserved(keys, m.cfg.Rules, m.cfg.Clock.Now(), nil, &m.observed)
	if plan.Mismatch != "" && !req.AdoptSettings {
		return 0, fmt.Errorf("%w: %s", ErrConfigMismatch, plan.Mismatch)
	}
	if !plan.Bootstrap && plan.Active.Version != newest {
		return newest, nil
	}
	rec := NewRecord(newest+1, m.cfg.Algorithm, m.cfg.Rules, m.cfg.Clock.Now(), false)
	rec.Actor, rec.Reason = req.Actor, req.Reason
	k, err := m.cfg.Backend.Create(ctx, rec)
	switch {
	case errors.Is(err, signer.ErrAlreadyRotated):
		m.cfg.Metrics.Rotation("already_rotated")
		return 0, nil // another replica made it: answer with the newest key
	case err != nil:
		m.cfg.Metrics.Rotation("failed")
		return 0, fmt.Errorf("rotation: create version %d: %w", newest+1, err)
	}
	m.cfg.Metrics.Rotation("created")
	// The backend may have given it a higher number than asked for (one
	// above every version ever used, when the newest are no longer held).
	return k.Version, nil
}
