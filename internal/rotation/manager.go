package rotation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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

// Published is a key in the JWKS, with its kid.
type Published struct {
	KeyState
	KID string
}

// Snapshot is the lifecycle as of one evaluation: what to publish and which
// key signs. It is immutable once made.
type Snapshot struct {
	At        time.Time
	Plan      Plan
	Keys      []Published // pending, active, retiring
	Signing   signer.SigningKey
	HasActive bool
	signers   []signer.SigningKey // one per Keys entry
}

// SigningAt is the key a signature made at now must use under the rules:
// the newest published key that is active or has reached its activates_at.
// The sign path asks this at request time, so a snapshot made before a
// pending key's activation (a lifecycle loop stalled by a slow disk or
// Vault) never lets the older key sign past it. Both backends allow it: a
// pin only ever refuses versions below the pinned one.
func (s *Snapshot) SigningAt(now time.Time) (signer.SigningKey, bool) {
	for i := len(s.Keys) - 1; i >= 0; i-- {
		k := s.Keys[i]
		if k.State != Active && (k.State != Pending || k.Waiting || k.ActivatesAt.After(now)) {
			continue // a waiting gated key signs only once its activation is written
		}
		if i < len(s.signers) {
			return s.signers[i], true
		}
		return signer.NewSigningKey(k.Version, k.Algorithm, k.KID), true
	}
	return signer.SigningKey{}, false
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
	snap atomic.Pointer[Snapshot]
	kick chan struct{}

	mu        ctxMutex // serialises Tick and Rotate in this process
	kids      map[int]string
	emitted   map[string]bool
	unsent    map[string]Event // events the trail could not take yet, by id
	pinned    int
	lastErr   atomic.Pointer[string]
	backendUp atomic.Bool
	// published is when the keys of the snapshot last published (and
	// handed to OnChange) were read, Unix nanoseconds: staleness counts
	// from it, not from the last read, which may be followed by a failed
	// step and no new snapshot.
	published atomic.Int64

	// failure is the failing step of the loop and its backoff; nil while
	// the last tick succeeded. Written under mu, read by Run and Health.
	failure atomic.Pointer[Failure]
	// lastSigned holds, by version, when this process last signed with it
	// (*atomic.Int64, Unix nanoseconds): retirement counts from it.
	lastSigned sync.Map
	// held is an emergency requested here that has not completed (under
	// mu); heldStatus mirrors it for Health and the metrics.
	held       *heldIntent
	heldStatus atomic.Pointer[EmergencyStatus]
	// compromisedBelow: versions below it belong to a pending emergency
	// (one requested here, or an intent any replica stored) and never sign
	// again. It only grows.
	compromisedBelow atomic.Int64
	// observed is the propagation last read (under mu); written
	// activations are immutable and kept.
	observed Observed
}

// ctxMutex is a mutex whose Lock a waiter can give up (make it with
// capacity 1).
type ctxMutex chan struct{}

func (c ctxMutex) Lock()   { c <- struct{}{} }
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

// heldIntent is an emergency this process requested and has not completed.
type heldIntent struct {
	in     signer.Intent
	stored bool // SaveIntent succeeded: every replica sees and completes it
}

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
	return &Manager{cfg: cfg, mu: make(ctxMutex, 1), kick: make(chan struct{}, 1), kids: map[int]string{}, emitted: map[string]bool{}, unsent: map[string]Event{}}, nil
}

// Snapshot returns the latest snapshot, or nil before the first.
func (m *Manager) Snapshot() *Snapshot { return m.snap.Load() }

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
	if f := m.failure.Load(); f != nil {
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
	if f := m.failure.Load(); f != nil && !f.action && m.cfg.Clock.Now().Before(f.RetryAt) {
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
	if f := m.failure.Load(); f != nil && !f.action {
		m.recovered() // the read that failed works again
	}
	return nil
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
	m.flushUnsent(ctx)
	return m.settle(ctx, actor, allowed)
}

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
		if f := m.failure.Load(); f == nil || !f.action || allowed {
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
		_, err := m.cfg.Backend.Create(ctx, rec)
		switch {
		case errors.Is(err, signer.ErrAlreadyRotated):
			m.cfg.Metrics.Rotation("already_rotated")
		case err != nil:
			return false, m.actionFailed(ctx, "rotate", next, err)
		default:
			m.cfg.Metrics.Rotation("created")
			m.cfg.Logger.Info("key created", "version", next, "activates_at", rec.ActivatesAt)
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
			m.emit(ctx, Event{Type: EventDestroyed, Version: k.Version, KID: m.kid(k), Actor: actor, Reason: reason})
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

// store makes the snapshot of plan, stores it and hands it to OnChange.
func (m *Manager) store(plan Plan, now time.Time) *Snapshot {
	s := &Snapshot{At: now, Plan: plan}
	for _, ks := range plan.Published {
		p := Published{KeyState: ks, KID: m.kid(ks.Key)}
		s.Keys = append(s.Keys, p)
		s.signers = append(s.signers, signer.NewSigningKey(p.Version, p.Algorithm, p.KID))
	}
	for i, p := range s.Keys {
		if p.State == Active {
			s.Signing = s.signers[i]
			s.HasActive = true
		}
	}
	m.lastSigned.Range(func(v, _ any) bool { // forget destroyed versions
		if len(s.Keys) > 0 && v.(int) < s.Keys[0].Version {
			m.lastSigned.Delete(v)
		}
		return true
	})
	m.snap.Store(s)
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(s)
	}
	m.published.Store(now.UnixNano())
	return s
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
			m.emit(ctx, Event{Type: EventActivated, Version: p.Version, KID: p.KID, Actor: "scheduler"})
		}
		if ks.State == Retiring {
			reason := "verify-only"
			if !ks.RetiresAt.IsZero() {
				reason += " until " + ks.RetiresAt.Format(time.RFC3339)
			}
			m.emit(ctx, Event{Type: EventRetired, Version: p.Version, KID: p.KID, Actor: "scheduler", Reason: reason})
		}
	}
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
	keys, err := m.cfg.Backend.Keys(ctx)
	if err != nil && !req.Emergency {
		return Published{}, m.readFailed(ctx, "keys", err)
	}
	newest := 0
	if len(keys) > 0 {
		newest = keys[len(keys)-1].Version
	}
	var v int
	if req.Emergency {
		if err != nil { // the keys cannot be read: every key known here is compromised
			if s := m.snap.Load(); s != nil && len(s.Keys) > 0 {
				newest = s.Keys[len(s.Keys)-1].Version
			}
			_ = m.readFailed(ctx, "keys", err)
		}
		v, err = m.emergency(ctx, signer.Intent{After: newest, Reason: req.Reason, Actor: req.Actor, At: m.cfg.Clock.Now()})
	} else {
		v, err = m.rotateNormal(ctx, keys, newest, req)
	}
	if err != nil {
		return Published{}, err
	}
	if err := m.tickLocked(ctx, req.Actor); err != nil {
		return Published{}, err
	}
	// The key asked for; after a lost race, the newest key another replica made.
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
		if !m.emitted[creationEvent(p).id()] {
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
	_, err := m.cfg.Backend.Create(ctx, rec)
	switch {
	case errors.Is(err, signer.ErrAlreadyRotated):
		m.cfg.Metrics.Rotation("already_rotated")
		return 0, nil // another replica made it: answer with the newest key
	case err != nil:
		m.cfg.Metrics.Rotation("failed")
		return 0, fmt.Errorf("rotation: create version %d: %w", newest+1, err)
	}
	m.cfg.Metrics.Rotation("created")
	return newest + 1, nil
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
		audited := m.reportFailure(ctx, Event{Type: EventRotationFailed, Version: in.After + 1, Actor: in.Actor,
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

// compromised marks every version up to after as no longer signing.
func (m *Manager) compromised(after int) { raise(&m.compromisedBelow, int64(after+1)) }

// setHeld publishes the state of an emergency held here (nil h: none).
func (m *Manager) setHeld(h *heldIntent, err error) {
	if h == nil {
		m.heldStatus.Store(nil)
		return
	}
	st := &EmergencyStatus{After: h.in.After, Reason: h.in.Reason, Actor: h.in.Actor, Since: h.in.At, Stored: h.stored}
	if err != nil {
		st.LastError = err.Error()
	}
	m.heldStatus.Store(st)
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

// actionAllowed: no failed action is waiting out its backoff.
func (m *Manager) actionAllowed() bool {
	f := m.failure.Load()
	return f == nil || !f.action || !m.cfg.Clock.Now().Before(f.RetryAt)
}

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
		m.reportFailure(ctx, Event{Type: EventRotationFailed, Version: version, Actor: "scheduler", Reason: op + ": " + err.Error()})
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
	now := m.cfg.Clock.Now()
	msg := "rotation: " + op + ": " + err.Error()
	if !action {
		msg = "rotation: read backend: " + err.Error()
	}
	m.lastErr.Store(&msg)
	m.cfg.Metrics.LifecycleFailure(op)
	prev := m.failure.Load()
	f := &Failure{Op: op, Error: err.Error(), Since: now, Failures: 1, Backoff: min(minBackoff, m.cfg.Refresh), action: action}
	if prev != nil {
		f.Since, f.Failures = prev.Since, prev.Failures+1
		f.Backoff = 2 * prev.Backoff
		f.action = action || prev.action
	}
	limit := m.cfg.Refresh
	if f.action {
		limit = max(limit, maxActionBackoff)
	}
	f.Backoff = min(max(f.Backoff, min(minBackoff, m.cfg.Refresh)), limit)
	f.RetryAt = now.Add(f.Backoff)
	m.failure.Store(f)
	changed := prev == nil || prev.Op != op || prev.Error != f.Error
	if changed {
		m.cfg.Logger.Warn("lifecycle step failing; backing off", "op", op, "err", err, "retry_in", f.Backoff, "consecutive_failures", f.Failures)
	} else {
		m.cfg.Logger.Debug("lifecycle step still failing", "op", op, "retry_in", f.Backoff, "consecutive_failures", f.Failures)
	}
	return changed && event
}

// recovered leaves the failure state after a tick that did all it had to.
func (m *Manager) recovered() {
	m.lastErr.Store(nil)
	if f := m.failure.Swap(nil); f != nil {
		m.cfg.Logger.Info("lifecycle recovered", "op", f.Op, "failed_for", m.cfg.Clock.Now().Sub(f.Since), "consecutive_failures", f.Failures)
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

// SigningKey is the key a signature made at now uses (Snapshot.SigningAt),
// with the snapshot it comes from. ErrNoKey: none yet; ErrEmergencyPending:
// the key is one a pending emergency replaces, which never signs again.
func (m *Manager) SigningKey(now time.Time) (*Snapshot, signer.SigningKey, error) {
	s := m.snap.Load()
	if s == nil {
		return nil, signer.SigningKey{}, ErrNoKey
	}
	k, ok := s.SigningAt(now)
	switch {
	case !ok:
		return s, k, ErrNoKey
	case int64(k.Version) < m.compromisedBelow.Load(), m.predatesEmergency(s, k.Version):
		return s, k, ErrEmergencyPending
	}
	return s, k, nil
}

// predatesEmergency: version v of s was created before the pending
// emergency held here was asked for, so it is compromised although its
// version may be above the intent's (a key the snapshot of a replica that
// could not read the keys did not show).
func (m *Manager) predatesEmergency(s *Snapshot, v int) bool {
	h := m.heldStatus.Load()
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

// Signed records that version v made a signature at t (after the backend
// answered): the lifecycle never destroys it before t + retire-after.
func (m *Manager) Signed(v int, t time.Time) {
	p, ok := m.lastSigned.Load(v)
	if !ok {
		p, _ = m.lastSigned.LoadOrStore(v, new(atomic.Int64))
	}
	raise(p.(*atomic.Int64), t.UnixNano())
}

// raise sets a to v unless it already holds as much.
func raise(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// signedTimes is lastSigned as the rules take it.
func (m *Manager) signedTimes() map[int]time.Time {
	var out map[int]time.Time
	m.lastSigned.Range(func(v, p any) bool {
		if out == nil {
			out = map[int]time.Time{}
		}
		out[v.(int)] = time.Unix(0, p.(*atomic.Int64).Load()).UTC()
		return true
	})
	return out
}

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
	h := Health{BackendUp: m.backendUp.Load(), Failing: m.failure.Load(), EmergencyPending: m.heldStatus.Load()}
	if e := m.lastErr.Load(); e != nil {
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
	if f := m.failure.Load(); f != nil {
		return f.Backoff
	}
	return 0
}

// EmergencyPending implements metrics.Lifecycle.
func (m *Manager) EmergencyPending() (pending, stored bool) {
	if st := m.heldStatus.Load(); st != nil {
		return true, st.Stored
	}
	return false, false
}
