package audit

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RotationFact is one rotation the schedule called for (or one made
// outside it): when it was due and when it was done.
type RotationFact struct {
	// AfterVersion is the key whose creation the due time follows from;
	// Version the key that rotation created (0: none yet).
	AfterVersion int        `json:"after_version"`
	Version      int        `json:"version"`
	Due          *time.Time `json:"due"`
	Done         *time.Time `json:"done"`
	Actor        string     `json:"actor"`
	// Status: on_time, late, missed (due, not done), due (within the
	// tolerance), upcoming, on_demand (before it was due), emergency.
	Status string `json:"status"`
	// Delay is done − due (late or on time), or now − due (missed).
	Delay string `json:"delay"`
	// Postponed: the key was still pending when the schedule came due, so
	// the rotation was due once it activated.
	Postponed bool `json:"postponed"`
	Untrusted bool `json:"untrusted"`
}

// The statuses of a rotation.
const (
	StatusOnTime    = "on_time"
	StatusLate      = "late"
	StatusMissed    = "missed"
	StatusDue       = "due"
	StatusUpcoming  = "upcoming"
	StatusOnDemand  = "on_demand"
	StatusEmergency = "emergency"
)

// Finding is a policy finding.
type Finding struct {
	Kind      string     `json:"kind"`
	Severity  string     `json:"severity"`
	Version   int        `json:"version"`
	Seq       int64      `json:"seq"`
	Time      *time.Time `json:"time"`
	Message   string     `json:"message"`
	Untrusted bool       `json:"untrusted"`
}

// The kinds of findings.
const (
	FindChainBroken           = "chain_broken"            // a bad record, a head mismatch, store problems
	FindHeldWithoutEvent      = "held_without_event"      // the backend holds a key the chain never saw created
	FindDestroyedWithoutEvent = "destroyed_without_event" // a key gone from the backend without its destroyed event
	FindOverlappingActive     = "overlapping_active"      // two keys active at once beyond the clock skew
	FindEarlyDestruction      = "early_destruction"       // retired key destroyed before max-token-lifetime + skew
	FindOutOfOrder            = "out_of_order"            // events out of order
	FindUnconfirmedActivation = "unconfirmed_activation"  // a gated key activated without every confirmation
	FindLateRotation          = "late_rotation"
	FindMissedRotation        = "missed_rotation"
	FindRotationFailed        = "rotation_failed"
	FindTornRecord            = "torn_record"
)

// The severities of findings.
const (
	SeverityHigh   = "high"
	SeverityMedium = "medium"
	SeverityLow    = "low"
)

// schedule is each rotation's due time against its done time: for each key
// the next one, and for the newest key the rotation still to come.
func (f *facts) schedule() []RotationFact {
	out := []RotationFact{}
	if f.pol.Schedule == nil {
		return out
	}
	var chain []*key // the keys with a creation event, by version
	for _, v := range f.order {
		if k := f.keys[v]; k.createSeq != 0 && !k.created.IsZero() {
			chain = append(chain, k)
		}
	}
	for i, k := range chain {
		// A row rests on the creations (and the activation, when it
		// postponed the rotation) it is computed from.
		r := RotationFact{AfterVersion: k.Version, Untrusted: k.createUntrusted}
		due := f.pol.Schedule.Next(k.created)
		// Rule 1: a rotation due while the key is still pending waits for
		// its activation.
		if act := cmpTime(k.activeFrom, k.activatesAt); act.After(due) {
			due, r.Postponed = act, true
			r.Untrusted = r.Untrusted || k.activeUntrusted
		}
		r.Due = ptr(due)
		if i+1 < len(chain) {
			f.done(&r, due, chain[i+1])
		} else if !f.pending(&r, k, due) {
			continue
		}
		if f.inPeriod(r) {
			out = append(out, r)
		}
	}
	return out
}

// done judges the rotation due at due, done by creating next.
func (f *facts) done(r *RotationFact, due time.Time, next *key) {
	r.Version, r.Done, r.Actor = next.Version, ptr(next.created), next.Actor
	r.Untrusted = r.Untrusted || next.createUntrusted
	late := next.created.Sub(due)
	switch {
	case next.Emergency:
		r.Status = StatusEmergency
	case late < 0:
		r.Status = StatusOnDemand
	case late > f.pol.LateAfter:
		r.Status, r.Delay = StatusLate, late.String()
	default:
		r.Status, r.Delay = StatusOnTime, late.String()
	}
}

// pending judges the rotation after the newest key k, not done (yet). It
// reports false when there is none to judge (k destroyed or gone).
func (f *facts) pending(r *RotationFact, k *key, due time.Time) bool {
	if !k.destroyed.IsZero() || k.Held == "no" {
		return false
	}
	switch over := f.ref.Sub(due); {
	case over < 0:
		r.Status = StatusUpcoming
	case over > f.pol.LateAfter:
		r.Status, r.Delay = StatusMissed, over.String()
	default:
		r.Status, r.Delay = StatusDue, over.String()
	}
	return true
}

// inPeriod: the rotation was due or done within the period, or is the one
// to come.
func (f *facts) inPeriod(r RotationFact) bool {
	in := func(t *time.Time) bool { return t != nil && !t.Before(f.since) && !t.After(f.until) }
	return in(r.Due) || in(r.Done) || r.Status == StatusUpcoming
}

// findings are the policy findings of the period, most severe first.
func (f *facts) findings(sched []RotationFact) []Finding {
	out := f.chainFindings()
	out = append(out, f.overlaps()...)
	out = append(out, f.earlyDestructions()...)
	out = append(out, f.orderFindings...)
	out = append(out, f.unconfed...)
	for _, r := range sched {
		switch r.Status {
		case StatusLate:
			out = append(out, Finding{Kind: FindLateRotation, Severity: SeverityMedium, Version: r.Version, Time: r.Done, Untrusted: r.Untrusted,
				Message: fmt.Sprintf("the rotation after key version %d was due at %s and done %s later (key version %d), beyond the %s tolerance",
					r.AfterVersion, stamp(r.Due), r.Delay, r.Version, f.pol.LateAfter)})
		case StatusMissed:
			out = append(out, Finding{Kind: FindMissedRotation, Severity: SeverityHigh, Version: r.AfterVersion, Time: r.Due, Untrusted: r.Untrusted,
				Message: fmt.Sprintf("the rotation after key version %d was due at %s and is not done %s later", r.AfterVersion, stamp(r.Due), r.Delay)})
		}
	}
	out = append(out, f.failures...)
	kept := []Finding{}
	for _, x := range out {
		if x.Time == nil || (!x.Time.Before(f.since) && !x.Time.After(f.until)) {
			kept = append(kept, x)
		}
	}
	rank := map[string]int{SeverityHigh: 0, SeverityMedium: 1, SeverityLow: 2}
	slices.SortStableFunc(kept, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(rank[a.Severity], rank[b.Severity]), cmp.Compare(a.Seq, b.Seq))
	})
	return kept
}

// chainFindings are the verdict's failures as findings (no time: they hold
// for the whole chain).
func (f *facts) chainFindings() []Finding {
	var out []Finding
	v := f.v
	if v.Chain != nil {
		var seq int64
		if ce, ok := v.Chain.(*ChainError); ok {
			seq = ce.Seq
		}
		out = append(out, Finding{Kind: FindChainBroken, Severity: SeverityHigh, Seq: seq,
			Message: "the audit chain is broken at " + v.Chain.Error() + "; what follows it cannot be trusted"})
	}
	if v.Head != nil {
		out = append(out, Finding{Kind: FindChainBroken, Severity: SeverityHigh, Message: v.Head.Error()})
	}
	for _, p := range v.Problems {
		out = append(out, Finding{Kind: FindChainBroken, Severity: SeverityHigh, Message: "the store reports: " + p})
	}
	var re *ReconcileError
	switch {
	case asReconcile(v.Reconcile, &re):
		for _, kv := range re.Missing {
			out = append(out, Finding{Kind: FindHeldWithoutEvent, Severity: SeverityHigh, Version: kv.Version,
				Message: fmt.Sprintf("the backend holds key version %d (kid %s) but the chain has no creation event for it: the audit tail was cut off", kv.Version, kv.KID)})
		}
		for _, kv := range re.Vanished {
			out = append(out, Finding{Kind: FindDestroyedWithoutEvent, Severity: SeverityHigh, Version: kv.Version,
				Message: fmt.Sprintf("key version %d (kid %s) is no longer held by the backend but has no destroyed event: deleted outside the lifecycle, or the event was lost", kv.Version, kv.KID)})
		}
	case v.Reconcile != nil:
		out = append(out, Finding{Kind: FindChainBroken, Severity: SeverityHigh, Message: v.Reconcile.Error()})
	}
	return out
}

func asReconcile(err error, re **ReconcileError) bool {
	r, ok := err.(*ReconcileError)
	if ok {
		*re = r
	}
	return ok
}

// overlaps finds keys active at the same time for longer than the clock
// skew: a key is active from its activation until it retired (or was
// destroyed, or the period's end).
func (f *facts) overlaps() []Finding {
	type span struct {
		k        *key
		from, to time.Time
	}
	var spans []span
	for _, v := range f.order {
		k := f.keys[v]
		if k.activeFrom.IsZero() {
			continue
		}
		to := cmpTime(k.retired, cmpTime(k.destroyed, f.ref))
		spans = append(spans, span{k, k.activeFrom, to})
	}
	var out []Finding
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			overlap := minTime(a.to, b.to).Sub(maxTime(a.from, b.from))
			if overlap <= f.pol.ClockSkew {
				continue
			}
			at := maxTime(a.from, b.from)
			out = append(out, Finding{Kind: FindOverlappingActive, Severity: SeverityHigh, Version: b.k.Version, Time: ptr(at),
				Untrusted: a.k.Untrusted || b.k.Untrusted,
				Message: fmt.Sprintf("key versions %d and %d were both active for %s from %s, beyond the %s clock skew",
					a.k.Version, b.k.Version, overlap, at.Format(time.RFC3339), f.pol.ClockSkew)})
		}
	}
	return out
}

// earlyDestructions finds retired keys destroyed before max-token-lifetime
// + clock skew had passed (a token they signed could still be valid). An
// emergency rotation destroys at once by design: not a finding.
func (f *facts) earlyDestructions() []Finding {
	var out []Finding
	min := f.pol.MaxTokenLifetime + f.pol.ClockSkew
	for _, v := range f.order {
		k := f.keys[v]
		if k.retired.IsZero() || k.destroyed.IsZero() || k.CutByEmergency {
			continue
		}
		if after := k.destroyed.Sub(k.retired); after < min {
			out = append(out, Finding{Kind: FindEarlyDestruction, Severity: SeverityHigh, Version: k.Version, Seq: k.destroySeq,
				Time: ptr(k.destroyed), Untrusted: k.Untrusted,
				Message: fmt.Sprintf("key version %d was destroyed %s after it retired, before max-token-lifetime + clock skew (%s): tokens it signed could still be valid",
					k.Version, after, min)})
		}
	}
	return out
}

// ClientFacts is one client's propagation confirmations.
type ClientFacts struct {
	Client        string         `json:"client"`
	Confirmations []Confirmation `json:"confirmations"`
	// ActivatedWithout are the key versions that activated without this
	// client's confirmation (their max wait ran out).
	ActivatedWithout []int `json:"activated_without"`
}

// Confirmation is one propagation_confirmed event.
type Confirmation struct {
	Version   int       `json:"version"`
	By        string    `json:"by"` // fetch or admin
	Actor     string    `json:"actor"`
	Time      time.Time `json:"time"`
	Seq       int64     `json:"seq"`
	Untrusted bool      `json:"untrusted"`
}

// propagation is the confirmations of the period per client, by name.
func (f *facts) propagation() []ClientFacts {
	by := map[string]*ClientFacts{}
	get := func(c string) *ClientFacts {
		if by[c] == nil {
			by[c] = &ClientFacts{Client: c, Confirmations: []Confirmation{}, ActivatedWithout: []int{}}
		}
		return by[c]
	}
	for i, ev := range f.v.Events {
		t := parseTime(ev.Time)
		if t.Before(f.since) || t.After(f.until) {
			continue
		}
		switch ev.Type {
		case PropagationConfirmed:
			client, how := confirmedClient(ev.Reason)
			c := get(client)
			c.Confirmations = append(c.Confirmations, Confirmation{Version: ev.Version, By: how, Actor: ev.Actor, Time: t, Seq: ev.Seq, Untrusted: f.untrusted(i)})
		case ActivationUnconfirmed:
			for _, client := range unconfirmedClients(ev.Reason) {
				c := get(client)
				c.ActivatedWithout = append(c.ActivatedWithout, ev.Version)
			}
		}
	}
	out := []ClientFacts{}
	for _, c := range by {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b ClientFacts) int { return strings.Compare(a.Client, b.Client) })
	return out
}

// confirmedClient reads a propagation_confirmed reason ("client C
// confirmed by fetch"); an unexpected reason is kept whole as the client.
func confirmedClient(reason string) (client, by string) {
	rest, ok := strings.CutPrefix(reason, "client ")
	if !ok {
		return reason, ""
	}
	if i := strings.LastIndex(rest, " confirmed by "); i >= 0 {
		return rest[:i], rest[i+len(" confirmed by "):]
	}
	return rest, ""
}

// eventsInPeriod are the events recorded within the period, and every event
// whose time cannot be read (a tampered record), as stored.
func (f *facts) eventsInPeriod() []EventFacts {
	out := []EventFacts{}
	for i, ev := range f.v.Events {
		t := parseTime(ev.Time)
		if !t.IsZero() && (t.Before(f.since) || t.After(f.until)) {
			continue
		}
		out = append(out, EventFacts{Seq: ev.Seq, Time: ev.Time, Type: ev.Type, KID: ev.KID, Version: ev.Version,
			Actor: ev.Actor, Reason: ev.Reason, Hash: ev.Hash, Untrusted: f.untrusted(i)})
	}
	return out
}

func stamp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
