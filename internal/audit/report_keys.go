package audit

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// KeyFacts is the lifecycle of one key version as the chain tells it.
type KeyFacts struct {
	Version int    `json:"version"`
	KID     string `json:"kid"`
	// Origin is the event that created it: bootstrap, created, emergency;
	// "unknown" for a version with no creation event.
	Origin string `json:"origin"`
	Actor  string `json:"actor"`
	Reason string `json:"reason"`
	// Created is when it was published; ActivatesAt when it was due to
	// sign (created + propagation delay; at once for bootstrap and
	// emergency keys); Activated when it started signing.
	Created     *time.Time `json:"created"`
	ActivatesAt *time.Time `json:"activates_at"`
	Activated   *time.Time `json:"activated"`
	Retired     *time.Time `json:"retired"`
	Destroyed   *time.Time `json:"destroyed"`
	DestroyedBy string     `json:"destroyed_by"`
	// Emergency: created by an emergency rotation. CutByEmergency:
	// destroyed at once by a later one.
	Emergency      bool `json:"emergency"`
	CutByEmergency bool `json:"cut_by_emergency"`
	// Gated: its activation waited for expected clients (it has
	// propagation_confirmed or activation_unconfirmed events); GatedWait
	// is how long past ActivatesAt it waited.
	Gated       bool     `json:"gated"`
	GatedWait   string   `json:"gated_wait"`
	Unconfirmed []string `json:"activated_without"`
	// State at the end of the period: pending, active, retiring,
	// destroyed; "gone" when the backend no longer holds it without a
	// destroyed event; "unknown" for a version the backend holds that the
	// chain never saw.
	State string `json:"state"`
	// Held: the backend holds it ("yes", "no"; "unknown" when the keys
	// could not be read).
	Held string `json:"held"`
	// Untrusted: one of its events comes at or after the chain's first bad
	// record.
	Untrusted bool `json:"untrusted"`
	// Segments are its states over time, oldest first: what the timeline
	// draws.
	Segments []Segment `json:"segments"`
	Seqs     []int64   `json:"seqs"`
}

// Segment is a stretch of time a key spent in one state. Open: it had not
// ended by the period's end (To is then that end).
type Segment struct {
	State string    `json:"state"` // pending, gated_wait, active, retiring
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Open  bool      `json:"open"`
}

// The segment states.
const (
	SegPending   = "pending"    // published before active
	SegGatedWait = "gated_wait" // pending past activates_at, waiting for expected clients
	SegActive    = "active"
	SegRetiring  = "retiring" // verify-only, still published
)

// key is a version under construction.
type key struct {
	KeyFacts
	created, activatesAt, activeFrom, retired, destroyed time.Time
	last                                                 time.Time // of its newest event
	createSeq, destroySeq                                int64
	activatedSeen, retiredSeen                           bool
	// createUntrusted, activeUntrusted: its creation or activation event
	// is at or after the chain's first bad record.
	createUntrusted, activeUntrusted bool
}

// facts builds the report from the verified events.
type facts struct {
	v                  Verification
	pol                Policy
	since, until, ref  time.Time // ref: the period's end, or now when earlier
	keys               map[int]*key
	order              []int // versions, ascending
	emergencies        []*key
	orderFindings      []Finding
	failures, unconfed []Finding
}

func newFacts(v Verification, pol Policy) *facts {
	return &facts{v: v, pol: pol, keys: map[int]*key{}}
}

// untrusted reports whether the event at index i of the chain is at or
// after its first bad record.
func (f *facts) untrusted(i int) bool { return i >= f.v.Trusted }

// firstTime is the time of the first event with a readable time, or def.
func (f *facts) firstTime(def time.Time) time.Time {
	for _, ev := range f.v.Events {
		if t := parseTime(ev.Time); !t.IsZero() {
			return minTime(t, def)
		}
	}
	return def
}

func (f *facts) key(v int) *key {
	k := f.keys[v]
	if k == nil {
		k = &key{KeyFacts: KeyFacts{Version: v, Origin: "unknown", Held: "unknown"}}
		f.keys[v] = k
		f.order = append(f.order, v)
	}
	return k
}

// lifecycle reads every key's transitions from the events, in chain order,
// and notes the events that come out of order.
func (f *facts) lifecycle() {
	var prev time.Time
	var prevSeq int64
	for i, ev := range f.v.Events {
		t := parseTime(ev.Time)
		if !t.IsZero() && !prev.IsZero() && prev.Sub(t) > f.pol.ClockSkew {
			f.outOfOrder(ev, i, t, fmt.Sprintf("recorded at %s, %s before seq %d (%s): time runs backwards beyond the clock skew",
				ev.Time, prev.Sub(t), prevSeq, prev.Format(time.RFC3339)))
		}
		if !t.IsZero() {
			prev, prevSeq = t, ev.Seq
		}
		f.apply(ev, i, t)
	}
	slices.Sort(f.order)
	f.reconcile()
	for _, v := range f.order {
		f.finish(f.keys[v])
	}
}

// apply records one event's transition.
func (f *facts) apply(ev Event, i int, t time.Time) {
	switch ev.Type {
	case Bootstrap, Created, Emergency, Activated, Retired, Destroyed, PropagationConfirmed, ActivationUnconfirmed:
	case RotationFailed, TornRecord:
		f.failure(ev, i, t)
		return
	default:
		return
	}
	k := f.key(ev.Version)
	k.Seqs = append(k.Seqs, ev.Seq)
	k.Untrusted = k.Untrusted || f.untrusted(i)
	k.KID = cmpOr(k.KID, ev.KID)
	k.last = maxTime(k.last, t)
	if !k.destroyed.IsZero() && ev.Type != PropagationConfirmed {
		f.outOfOrder(ev, i, t, fmt.Sprintf("a %s event for key version %d after its destruction (seq %d)", ev.Type, ev.Version, k.destroySeq))
	}
	switch ev.Type {
	case Bootstrap, Created, Emergency:
		f.created(k, ev, i, t)
	case Activated, Retired, Destroyed:
		f.transition(k, ev, i, t)
	case PropagationConfirmed:
		k.Gated = true
	case ActivationUnconfirmed:
		k.Gated = true
		k.Unconfirmed = unconfirmedClients(ev.Reason)
		f.unconfed = append(f.unconfed, Finding{Kind: FindUnconfirmedActivation, Severity: SeverityMedium,
			Version: ev.Version, Seq: ev.Seq, Time: ptr(t), Untrusted: f.untrusted(i),
			Message: fmt.Sprintf("key version %d activated at its max wait without confirmation from: %s", ev.Version, strings.Join(k.Unconfirmed, ", "))})
	}
}

// transition records an activated, retired or destroyed event (the first
// of each for a version), noting one that comes out of order.
func (f *facts) transition(k *key, ev Event, i int, t time.Time) {
	switch ev.Type {
	case Activated:
		if k.createSeq == 0 {
			f.outOfOrder(ev, i, t, fmt.Sprintf("key version %d activated before its creation event", ev.Version))
		}
		if !k.activatedSeen {
			k.activatedSeen, k.activeUntrusted = true, f.untrusted(i)
			k.Activated = ptr(t)
			if k.activeFrom.IsZero() {
				k.activeFrom = t
			}
		}
	case Retired:
		if !k.activatedSeen && !k.Emergency && k.Origin != string(Bootstrap) {
			f.outOfOrder(ev, i, t, fmt.Sprintf("key version %d retired before it was activated", ev.Version))
		}
		if !k.retiredSeen {
			k.retiredSeen, k.retired, k.Retired = true, t, ptr(t)
		}
	case Destroyed:
		if k.createSeq == 0 {
			f.outOfOrder(ev, i, t, fmt.Sprintf("key version %d destroyed before its creation event", ev.Version))
		}
		if k.destroySeq == 0 {
			k.destroyed, k.destroySeq, k.Destroyed, k.DestroyedBy = t, ev.Seq, ptr(t), ev.Actor
			k.CutByEmergency = slices.ContainsFunc(f.emergencies, func(e *key) bool { return e.Version > k.Version && e.createSeq < ev.Seq })
		}
	}
}

// created records a creation event (the first one for a version).
func (f *facts) created(k *key, ev Event, i int, t time.Time) {
	if k.createSeq != 0 {
		return
	}
	if k.activatedSeen || k.retiredSeen {
		f.outOfOrder(ev, i, t, fmt.Sprintf("key version %d created after it was activated or retired", ev.Version))
	}
	k.createSeq, k.created, k.Created, k.createUntrusted = ev.Seq, t, ptr(t), f.untrusted(i)
	k.Origin, k.Actor, k.Reason = string(ev.Type), ev.Actor, ev.Reason
	k.activatesAt = t
	if ev.Type == Created && !t.IsZero() {
		k.activatesAt = t.Add(f.pol.PropagationDelay)
	} else {
		k.activeFrom = t // bootstrap and emergency keys sign at once
	}
	k.ActivatesAt = ptr(k.activatesAt)
	if ev.Type == Emergency {
		k.Emergency = true
		f.emergencies = append(f.emergencies, k)
	}
}

// reconcile marks each key held or not, and adds those the backend holds
// that the chain never saw.
func (f *facts) reconcile() {
	if !f.v.Reconciled {
		return
	}
	held := map[int]bool{}
	for _, kv := range f.v.Versions {
		held[kv.Version] = true
		if _, seen := f.keys[kv.Version]; !seen && !kv.Quarantined {
			k := f.key(kv.Version)
			k.KID = kv.KID
		}
	}
	slices.Sort(f.order)
	for _, k := range f.keys {
		k.Held = "no"
		if held[k.Version] {
			k.Held = "yes"
		}
	}
}

// finish derives a key's segments and its state at the period's end.
func (f *facts) finish(k *key) {
	end := f.ref
	k.Seqs = nonNil(k.Seqs)
	k.Unconfirmed = nonNil(k.Unconfirmed)
	switch {
	case k.createSeq == 0 && len(k.Seqs) == 0:
		k.State = "unknown"
	case !k.destroyed.IsZero() && !k.destroyed.After(end):
		k.State = "destroyed"
	case k.Held == "no":
		k.State = "gone"
	case !k.retired.IsZero() && !k.retired.After(end):
		k.State = string(SegRetiring)
	case !k.activeFrom.IsZero() && !k.activeFrom.After(end):
		k.State = SegActive
	default:
		k.State = SegPending
	}
	if k.Gated && !k.activeFrom.IsZero() && k.activeFrom.After(k.activatesAt) {
		k.GatedWait = k.activeFrom.Sub(k.activatesAt).String()
	}
	k.Segments = f.segments(k, end)
}

// segments are the stretches of k's states up to end. A key gone without a
// destroyed event ends with its last event.
func (f *facts) segments(k *key, end time.Time) []Segment {
	segs := segmentList{}
	if k.created.IsZero() {
		return segs
	}
	stop, open := k.stop(end)
	activeFrom := within(k.activeFrom, stop)
	segs.pending(k, activeFrom, stop, open)
	if activeFrom.IsZero() {
		return segs
	}
	retired := within(k.retired, stop)
	segs.add(SegActive, activeFrom, cmpTime(retired, stop), open && retired.IsZero())
	if !retired.IsZero() {
		segs.add(SegRetiring, retired, stop, open)
	}
	return segs
}

// stop is where k's known life ends within the period: its destruction, the
// last event of a key gone without a destroyed event, else end (and then
// the last segment stays open).
func (k *key) stop(end time.Time) (time.Time, bool) {
	switch {
	case !k.destroyed.IsZero() && !k.destroyed.After(end):
		return k.destroyed, false
	case k.Held == "no" && k.last.Before(end):
		return k.last, false // gone without a destroyed event: known up to its last event
	}
	return end, true
}

// within is t, or the zero time when t is zero or after stop.
func within(t, stop time.Time) time.Time {
	if t.IsZero() || t.After(stop) {
		return time.Time{}
	}
	return t
}

// segmentList collects a key's segments, leaving out empty or inverted ones.
type segmentList []Segment

func (s *segmentList) add(state string, from, to time.Time, open bool) {
	if from.IsZero() || to.Before(from) {
		return
	}
	*s = append(*s, Segment{State: state, From: from, To: to, Open: open})
}

// pending adds the stretch before activation (or up to stop): pending, and
// for a gated key past its activates_at the gated wait that follows.
func (s *segmentList) pending(k *key, activeFrom, stop time.Time, open bool) {
	pendEnd := cmpTime(activeFrom, stop)
	if k.Gated && k.activatesAt.Before(pendEnd) {
		s.add(SegPending, k.created, k.activatesAt, false)
		s.add(SegGatedWait, k.activatesAt, pendEnd, open && activeFrom.IsZero())
	} else if pendEnd.After(k.created) {
		s.add(SegPending, k.created, pendEnd, open && activeFrom.IsZero())
	}
}

// keysInPeriod are the keys whose life meets the period, oldest first.
func (f *facts) keysInPeriod() []KeyFacts {
	out := []KeyFacts{}
	for _, v := range f.order {
		k := f.keys[v]
		if k.created.IsZero() || (!k.created.After(f.until) && (k.destroyed.IsZero() || !k.destroyed.Before(f.since))) {
			out = append(out, k.KeyFacts)
		}
	}
	return out
}

// failure notes a rotation_failed or torn_record event.
func (f *facts) failure(ev Event, i int, t time.Time) {
	kind, msg := FindRotationFailed, fmt.Sprintf("rotation step failed for key version %d: %s", ev.Version, ev.Reason)
	if ev.Type == TornRecord {
		kind, msg = FindTornRecord, "a torn audit record was set aside: "+ev.Reason
	}
	f.failures = append(f.failures, Finding{Kind: kind, Severity: SeverityLow, Version: ev.Version, Seq: ev.Seq,
		Time: ptr(t), Untrusted: f.untrusted(i), Message: msg})
}

func (f *facts) outOfOrder(ev Event, i int, t time.Time, msg string) {
	f.orderFindings = append(f.orderFindings, Finding{Kind: FindOutOfOrder, Severity: SeverityMedium,
		Version: ev.Version, Seq: ev.Seq, Time: ptr(t), Untrusted: f.untrusted(i), Message: "seq " + fmt.Sprint(ev.Seq) + ": " + msg})
}

// unconfirmedClients reads the clients of an activation_unconfirmed reason
// ("activated after the max wait without confirmation from: a, b").
func unconfirmedClients(reason string) []string {
	_, list, ok := strings.Cut(reason, "without confirmation from: ")
	if !ok {
		return []string{}
	}
	var out []string
	for _, c := range strings.Split(list, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return nonNil(out)
}

// cmpTime is a unless it is zero, else b.
func cmpTime(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return a
}

func cmpOr(a, b string) string {
	if a == "" {
		return b
	}
	return a
}
