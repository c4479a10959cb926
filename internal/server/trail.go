package server

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// AuditTrail serves GET /v1/audit: a page of events, and whether the whole
// chain verifies and accounts for every key the backend holds and every
// propagation decision its store holds.
type AuditTrail struct {
	Log       *audit.Log
	Backend   signer.Backend
	Decisions DecisionSource // nil: the mode keeps none
	Clock     clock.Clock    // nil: the real clock
}

// DecisionSource lists every propagation decision a store holds.
type DecisionSource interface {
	Decisions(ctx context.Context) (signer.Observed, error)
}

// decisionGrace is how long after its time a stored propagation decision
// may still lack its event: keyd records the event right after storing the
// decision (or retries it while the trail refuses it).
const decisionGrace = time.Minute

// StoredDecisions is what the chain must record for the decisions src
// holds that are older than decisionGrace at now.
func StoredDecisions(ctx context.Context, src DecisionSource, now time.Time) ([]audit.Decision, error) {
	obs, err := src.Decisions(ctx)
	if err != nil {
		return nil, err
	}
	var out []audit.Decision
	for _, c := range obs.Confirmations {
		if now.Sub(c.At) >= decisionGrace {
			out = append(out, audit.Decision{Type: audit.PropagationConfirmed, Version: c.Version, Reason: rotation.ConfirmedReason(c)})
		}
	}
	for v, a := range obs.Activations {
		if len(a.Unconfirmed) > 0 && now.Sub(a.At) >= decisionGrace {
			out = append(out, audit.Decision{Type: audit.ActivationUnconfirmed, Version: v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].Type+audit.Type(out[i].Reason) < out[j].Type+audit.Type(out[j].Reason)
	})
	return out, nil
}

// Page implements api.AuditTrail.
func (a *AuditTrail) Page(ctx context.Context, since int64) ([]audit.Event, bool, error) {
	all, valid, err := a.verdict(ctx)
	if err != nil {
		return nil, false, err
	}
	page := make([]audit.Event, 0, len(all))
	for _, e := range all {
		if e.Seq > since {
			page = append(page, e)
		}
	}
	return page, valid, nil
}

// verdict reads the whole chain and says whether it verifies and accounts
// for every key the backend holds and every stored propagation decision
// (each not checked while it cannot be read). An error: the chain could not
// be read.
func (a *AuditTrail) verdict(ctx context.Context) ([]audit.Event, bool, error) {
	v, err := a.Verification(ctx)
	if err != nil {
		return nil, false, err
	}
	return v.Events, v.Err() == nil, nil
}

// Valid reports whether the chain verifies, for the chain watch.
func (a *AuditTrail) Valid(ctx context.Context) (bool, error) {
	_, valid, err := a.verdict(ctx)
	return valid, err
}

// Verification is the one check of the whole chain that /v1/audit's
// chain_valid, the chain watch and the report share. What the chain must
// account for is read first (the keys held, the stored decisions): a key
// destroyed meanwhile then already has its destroyed event (recorded before
// the deletion), a decision stored meanwhile its event, in the events read
// next.
func (a *AuditTrail) Verification(ctx context.Context) (audit.Verification, error) {
	versions, verr := HeldVersions(ctx, a.Backend)
	var decisions []audit.Decision
	var derr error
	if a.Decisions != nil {
		decisions, derr = StoredDecisions(ctx, a.Decisions, cmp.Or[clock.Clock](a.Clock, clock.Real{}).Now())
	}
	all, err := a.Log.Events(ctx, 0)
	if err != nil {
		return audit.Verification{}, fmt.Errorf("read audit chain: %w: %w", err, signer.ErrUnavailable)
	}
	v := a.inspect(all, versions, verr)
	switch {
	case a.Decisions == nil:
	case derr != nil:
		v.NotChecked = append(v.NotChecked, "that every stored propagation decision has its event: the decisions could not be read ("+derr.Error()+")")
	default:
		v.CheckDecisions(decisions)
	}
	return v, nil
}

// inspect is the verification of the chain all that /v1/audit's chain_valid
// and the report share: the chain, the log's problems (lines that are not
// events, a log that disagrees with the head kept beside the keys: deleted,
// replaced, cut off) and, when the backend's versions could be read (verr
// nil), the reconciliation with them.
func (a *AuditTrail) inspect(all []audit.Event, versions []audit.KeyVersion, verr error) audit.Verification {
	if verr != nil {
		versions = nil
	}
	v := audit.InspectEvents(all, versions, a.Log.Problems())
	if verr != nil {
		v.NotChecked = append(v.NotChecked, "reconciliation with the keys held: the backend's key versions could not be read ("+verr.Error()+")")
	}
	return v
}

// HeldVersions lists the key versions a backend holds, with their kids.
func HeldVersions(ctx context.Context, b interface {
	Keys(context.Context) ([]signer.Key, error)
}) ([]audit.KeyVersion, error) {
	keys, err := b.Keys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]audit.KeyVersion, 0, len(keys))
	for _, k := range keys {
		kid, err := signer.KID(k.Public)
		if err != nil {
			return nil, err
		}
		out = append(out, audit.KeyVersion{Version: k.Version, KID: kid})
	}
	// Versions whose unreadable file the local store set aside did not
	// vanish unseen: the audit need not account for them as destroyed.
	if q, ok := b.(interface{ QuarantinedVersions() []int }); ok {
		for _, v := range q.QuarantinedVersions() {
			out = append(out, audit.KeyVersion{Version: v, Quarantined: true})
		}
	}
	return out, nil
}

// DefaultLateAfter is how long after its due time a scheduled rotation may
// be done before the report calls it late.
const DefaultLateAfter = time.Hour

// Policy is the lifecycle settings of cfg, as the report judges them.
func Policy(cfg *config.Config, lateAfter time.Duration) audit.Policy {
	return audit.Policy{
		ScheduleSpec: cfg.RotationSchedule, Schedule: cfg.Schedule,
		PropagationDelay: cfg.PropagationDelay, MaxTokenLifetime: cfg.MaxTokenLifetime, ClockSkew: cfg.ClockSkew,
		ActivationMaxWait: cfg.ActivationMaxWait, LateAfter: lateAfter,
		Source: "the server's configuration (keyd serve)",
	}
}

// reportingTrail is the audit trail of keyd serve that also builds the
// report (GET /v1/audit/report) from the same verification as chain_valid,
// judged against the server's own configuration.
type reportingTrail struct {
	*AuditTrail
	policy audit.Policy
	clock  clock.Clock
	source string
}

// withReport gives a mode's audit trail the report; a trail of another kind
// is returned as it is (the route then answers 503).
func withReport(t api.AuditTrail, cfg *config.Config, clk clock.Clock) api.AuditTrail {
	at, ok := t.(*AuditTrail)
	if !ok {
		return t
	}
	return reportingTrail{AuditTrail: at, policy: Policy(cfg, DefaultLateAfter), clock: clk,
		source: "keyd serve (" + cfg.Backend + " backend), the chain every replica shares"}
}

// Report implements api.AuditReporter.
func (r reportingTrail) Report(ctx context.Context, q api.ReportQuery) (audit.Report, error) {
	v, err := r.Verification(ctx)
	if err != nil {
		return audit.Report{}, err
	}
	pol := r.policy
	if q.LateAfter > 0 {
		pol.LateAfter = q.LateAfter
	}
	return audit.BuildReport(v, pol,
		audit.Period{Since: q.Since, Until: q.Until, Now: r.clock.Now()}, r.source)
}
