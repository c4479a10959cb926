package rotation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// PropagationStore is the observed propagation every replica shares (the
// data dir, or Vault KV): fetch observations, confirmations and actual
// activations, the last two created once and never rewritten.
type PropagationStore interface {
	// Observed returns the observations of clients, their confirmations of
	// versions, and the activations of versions.
	Observed(ctx context.Context, versions []int, clients []string) (Observed, error)
	// Confirm stores c unless a confirmation of its client and version
	// exists; it returns the stored one.
	Confirm(ctx context.Context, c signer.Confirmation) (signer.Confirmation, error)
	// Activate stores a unless the version's activation exists; it returns
	// the stored one (another replica's, when it was first).
	Activate(ctx context.Context, a signer.Activation) (signer.Activation, error)
}

// Errors of Confirm, for a 422.
var (
	// ErrUnknownClient: the client is not in --expected-clients.
	ErrUnknownClient = errors.New("rotation: the client is not an expected client")
	// ErrUnknownVersion: no published key has the version.
	ErrUnknownVersion = errors.New("rotation: no published key has that version")
	// ErrNoPropagation: this replica has no propagation store.
	ErrNoPropagation = errors.New("rotation: observed propagation is not configured")
)

// loadObserved reads the propagation the rules need for keys (under mu):
// the activations of gated keys not known yet, and for those still waiting,
// their clients' observations and confirmations. Activations are kept.
func (m *Manager) loadObserved(ctx context.Context, keys []signer.Key) error {
	if m.cfg.Propagation == nil {
		return nil
	}
	var versions []int
	var clients []string
	for _, k := range keys {
		if _, known := m.observed.Activations[k.Version]; known || !k.HasRecord || !k.Gated() {
			continue
		}
		versions = append(versions, k.Version)
		for _, c := range k.ExpectedClients {
			if !slices.Contains(clients, c) {
				clients = append(clients, c)
			}
		}
	}
	if len(versions) == 0 {
		m.observed.Observations, m.observed.Confirmations = nil, nil
		return nil
	}
	obs, err := m.cfg.Propagation.Observed(ctx, versions, clients)
	if err != nil {
		return err
	}
	if m.observed.Activations == nil {
		m.observed.Activations = map[int]signer.Activation{}
	}
	for v, a := range obs.Activations {
		m.observed.Activations[v] = a
	}
	m.observed.Observations, m.observed.Confirmations = obs.Observations, obs.Confirmations
	return nil
}

// gate applies the plan's propagation gate: it stores the confirmations the
// fetches show, then, when the rule says so, the key's activation. It
// reports whether it wrote anything (the caller re-reads).
//
// A confirmation by fetch is stored only from activates_at on: by then
// every replica has stored the fetches its instances made before the key
// was created (a flush takes at most a second; the propagation delay is
// longer than jwks-max-age plus the refresh interval), so an instance that
// fetched from another replica a moment before the rotation is never
// missed for good.
func (m *Manager) gate(ctx context.Context, plan Plan) (bool, error) {
	g, st := plan.Gate, m.cfg.Propagation
	if st == nil {
		return false, nil
	}
	kid := m.kidOf(plan, g.Version)
	now := m.cfg.Clock.Now().UTC()
	k := plan.Published[len(plan.Published)-1]
	wrote := false
	for _, c := range g.Clients {
		if !c.Confirmed || c.Stored || now.Before(k.ActivatesAt) {
			continue
		}
		conf, err := st.Confirm(ctx, signer.Confirmation{Client: c.Client, Version: g.Version, By: c.By, At: now, Actor: "scheduler"})
		if err != nil {
			return false, m.actionFailed(ctx, "confirm", g.Version, err)
		}
		m.emit(ctx, confirmedEvent(conf, kid))
		m.cfg.Logger.Info("client confirmed for a pending key", "client", conf.Client, "version", g.Version, "by", conf.By)
		wrote = true
	}
	if !g.Activate {
		return wrote, nil
	}
	if wrote {
		return true, nil // re-read: the rule decides on the stored confirmations
	}
	a := signer.Activation{Version: g.Version, At: laterOf(now.Truncate(time.Second), k.ActivatesAt)}
	if !g.Confirmed {
		a.Unconfirmed = g.Unconfirmed
	}
	a, err := st.Activate(ctx, a)
	if err != nil {
		return false, m.actionFailed(ctx, "activate", g.Version, err)
	}
	if len(a.Unconfirmed) > 0 {
		m.emit(ctx, unconfirmedEvent(a, kid))
		m.cfg.Logger.Warn("key activated without confirmation from every expected client", "version", a.Version, "unconfirmed", a.Unconfirmed)
	}
	m.cfg.Logger.Info("gated key activation written", "version", a.Version, "at", a.At)
	return true, nil
}

func confirmedEvent(c signer.Confirmation, kid string) Event {
	return Event{Type: audit.PropagationConfirmed, Version: c.Version, KID: kid, Actor: cmp.Or(c.Actor, "scheduler"),
		Reason: ConfirmedReason(c)}
}

// ConfirmedReason is the reason of c's propagation_confirmed event: it
// names the client and who confirmed it (the audit trail keeps one event
// per version and reason).
func ConfirmedReason(c signer.Confirmation) string {
	return "client " + c.Client + " confirmed by " + c.By
}

func unconfirmedEvent(a signer.Activation, kid string) Event {
	return Event{Type: audit.ActivationUnconfirmed, Version: a.Version, KID: kid, Actor: "scheduler",
		Reason: "activated after the max wait without confirmation from: " + strings.Join(a.Unconfirmed, ", ")}
}

// reportDecisions sends the events of the propagation decisions last read
// from the store (under mu): each stored confirmation of a published key,
// and each activation written without confirmation. A decision is stored
// before its event, and the events the trail has not taken yet are queued
// in memory only: a crash in between would lose the event for good. The
// store is read in full at every start (and by every replica while a key
// waits), so the event of a decision any replica stored is recorded once
// (the trail deduplicates). keyd audit verify reports a decision without
// its event.
func (m *Manager) reportDecisions(ctx context.Context, keys []signer.Key) {
	kid := func(v int) string {
		for _, k := range keys {
			if k.Version == v {
				return m.kid(k)
			}
		}
		return ""
	}
	for _, c := range m.observed.Confirmations {
		if k := kid(c.Version); k != "" {
			m.emit(ctx, confirmedEvent(c, k))
		}
	}
	for v, a := range m.observed.Activations {
		if k := kid(v); k != "" && len(a.Unconfirmed) > 0 {
			m.emit(ctx, unconfirmedEvent(a, k))
		}
	}
}

func (m *Manager) kidOf(plan Plan, v int) string {
	for _, ks := range plan.Published {
		if ks.Version == v {
			return m.kid(ks.Key)
		}
	}
	return ""
}

// ConfirmRequest is an admin's confirmation that client holds version (a
// service that reads a static setting, after its redeploy).
type ConfirmRequest struct {
	Client  string
	Version int
	Actor   string
}

// Confirm stores an admin confirmation and applies what it releases.
// ErrUnknownClient: client is not in Rules.ExpectedClients;
// ErrUnknownVersion: no published key has the version.
func (m *Manager) Confirm(ctx context.Context, req ConfirmRequest) error {
	if !slices.Contains(m.cfg.Rules.ExpectedClients, req.Client) {
		return ErrUnknownClient
	}
	s := m.snap.Load()
	if s == nil || !slices.ContainsFunc(s.Keys, func(p Published) bool { return p.Version == req.Version }) {
		return ErrUnknownVersion
	}
	if m.cfg.Propagation == nil {
		return ErrNoPropagation
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	conf, err := m.cfg.Propagation.Confirm(ctx, signer.Confirmation{
		Client: req.Client, Version: req.Version, By: signer.ByAdmin, At: m.cfg.Clock.Now().UTC(), Actor: req.Actor,
	})
	if err != nil {
		return fmt.Errorf("rotation: store confirmation: %w", err)
	}
	e := confirmedEvent(conf, m.kidOf(s.Plan, req.Version))
	m.emit(ctx, e)
	if !m.out.recorded(e) {
		return fmt.Errorf("rotation: confirmation of %s for version %d stored but its audit event is not recorded yet; it is retried on the next tick", req.Client, req.Version)
	}
	m.cfg.Logger.Info("client confirmed by an admin", "client", conf.Client, "version", conf.Version, "by", conf.By, "actor", req.Actor)
	return m.tickLocked(ctx, req.Actor)
}

// PropagationStatus is GET /v1/propagation: the pending key, if any, and
// each expected client.
type PropagationStatus struct {
	Pending *Published  // nil when no key is pending
	Gate    *GateStatus // the pending key's gate (clients of its record), or the expected clients' observations
}

// Propagation reads the store and reports the pending key's gate as of now:
// for a gated pending key, its record's clients; otherwise this replica's
// expected clients, with what their fetches show.
func (m *Manager) Propagation(ctx context.Context) (PropagationStatus, error) {
	var st PropagationStatus
	s := m.snap.Load()
	if s == nil {
		return st, ErrNoKey
	}
	probe := signer.Key{Record: signer.Record{ExpectedClients: m.cfg.Rules.ExpectedClients, InstanceWindow: m.cfg.Rules.InstanceWindow}}
	var versions []int
	if n := len(s.Keys); n > 0 && s.Keys[n-1].State == Pending {
		p := s.Keys[n-1]
		st.Pending = &p
		versions = []int{p.Version}
		if p.Gated() {
			probe = p.Key
		} else {
			probe.Version, probe.ActivatesAt = p.Version, p.ActivatesAt
		}
	}
	if m.cfg.Propagation == nil {
		return st, ErrNoPropagation
	}
	obs, err := m.cfg.Propagation.Observed(ctx, versions, probe.ExpectedClients)
	if err != nil {
		return st, err
	}
	g := Gate(probe, &obs, m.cfg.Clock.Now())
	st.Gate = &g
	return st, nil
}

// UnconfirmedClients is the number of expected clients not yet confirmed
// for the pending key that waits for them (0 when none waits): the metric
// keyd_propagation_unconfirmed_clients.
func (m *Manager) UnconfirmedClients() int {
	if s := m.snap.Load(); s != nil && s.Plan.Gate != nil {
		return len(s.Plan.Gate.Unconfirmed)
	}
	return 0
}

// UntilActivationDeadline is the time from now until the pending key that
// waits for its clients activates, confirmed or not; false when no key
// waits: the metric keyd_propagation_deadline_seconds.
func (m *Manager) UntilActivationDeadline(now time.Time) (time.Duration, bool) {
	if s := m.snap.Load(); s != nil && s.Plan.Gate != nil {
		return s.Plan.Gate.Deadline.Sub(now), true
	}
	return 0, false
}
