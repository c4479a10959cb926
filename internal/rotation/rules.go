// Package rotation decides and applies the key lifecycle: pending → active →
// retiring → destroyed. This file holds the rules, as pure functions of
// (keys with their lifecycle records, config, now), and the propagation gate
// of a key whose record names expected clients; manager.go applies them.
package rotation

import (
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Schedule is the part of a robfig/cron schedule the rules need.
type Schedule interface{ Next(time.Time) time.Time }

// Rules are the settings of this replica that decide transitions.
type Rules struct {
	Schedule         Schedule
	ScheduleSpec     string        // the text of Schedule, compared with records
	PropagationDelay time.Duration // created → active
	RetireAfter      time.Duration // max-token-lifetime + 2 × clock-skew
	// Observed propagation (Gate, below): the clients whose verifiers must hold
	// a new key before it signs (empty: no gating), how recent a fetch keeps
	// an instance live, and how long past activates_at a key waits at most.
	// NewRecord fixes them in the record of each key it creates.
	ExpectedClients   []string
	InstanceWindow    time.Duration
	ActivationMaxWait time.Duration
}

// State of a published key.
type State string

// The published states; a destroyed key is not published.
const (
	Pending  State = "pending"
	Active   State = "active"
	Retiring State = "retiring"
)

// KeyState is one published key and when it changes state.
type KeyState struct {
	signer.Key
	State         State
	DeactivatedAt time.Time // zero unless retiring
	RetiresAt     time.Time // zero while unknown (pending, active)
	// Waiting: a gated key whose activation is not written yet. It never
	// signs on its own; ActivatesAt is its record's earliest activation.
	Waiting bool
}

// Plan is what the rules say about the keys at one instant.
type Plan struct {
	Published []KeyState // pending, active and retiring keys, oldest first
	Active    *KeyState  // the one signing key; nil only before bootstrap
	// DestroyBelow > 0: every version below it must be destroyed now.
	DestroyBelow int
	// Bootstrap: there is no key at all; create the first, active at once.
	Bootstrap bool
	// RotationDue: the schedule calls for a new version now.
	RotationDue  bool
	NextRotation time.Time
	// NextTransition is the earliest future instant at which this plan changes.
	NextTransition time.Time
	// Mismatch explains why this replica's settings disagree with the
	// newest record; while set, the loop creates and destroys nothing.
	Mismatch string
	// Gate is the propagation gate of the newest pending key while it
	// waits for its expected clients (nil otherwise).
	Gate *GateStatus
}

// EvaluateObserved applies the lifecycle rules (docs/design.md "Key lifecycle") to the
// keys a backend holds, oldest first, at now. lastSigned (by version; may
// be nil) is when each version last signed here: a key retires from the
// later of its successor's activates_at and its last signature, so it is
// never destroyed earlier than retire-after past a signature it actually
// made (one in flight across the activation, or made while this replica's
// loop was stalled). obs (may be nil) is the observed propagation: a gated
// key activates at the time its activation record holds, and waits (never
// signs) while it has none; the plan's Gate says whether it activates now
// (see Gate).
func EvaluateObserved(keys []signer.Key, r Rules, now time.Time, lastSigned map[int]time.Time, obs *Observed) Plan {
	var p Plan
	if len(keys) == 0 {
		p.Bootstrap = true
		return p
	}
	keys = withRecords(keys, r)
	newest := keys[len(keys)-1]
	p.Mismatch = mismatch(newest.Record, r)

	// Rule 3: an emergency key makes every older key unpublished and destroyed at once.
	first := newestEmergency(keys)
	if first > 0 {
		p.DestroyBelow = keys[first].Version
	}
	live, waiting := withActivations(keys[first:], obs)
	next := p.place(live, waiting, r, now, lastSigned)
	if n := len(p.Published); n > 0 && p.Published[n-1].Waiting {
		g := Gate(p.Published[n-1].Key, obs, now)
		p.Gate = &g
	}

	// Rule 1: a scheduled rotation is due at schedule.Next(newest.created_at),
	// the same instant on every replica; not while a key is still pending.
	p.NextRotation = r.Schedule.Next(newest.CreatedAt)
	if newest.Version == p.Active.Version {
		p.RotationDue = !p.NextRotation.After(now)
		next = append(next, p.NextRotation)
	}
	p.NextTransition = earliestAfter(next, now)
	return p
}

// newestEmergency is the index of the newest emergency key (0: none, or the
// oldest key).
func newestEmergency(keys []signer.Key) int {
	first := 0
	for i, k := range keys {
		if k.Emergency {
			first = i
		}
	}
	return first
}

// place gives each live key its state (rule 2: one active key, pending
// keys above it, retiring keys below), sets p.Published, p.Active and
// p.DestroyBelow for the retiring keys past their retires_at, and returns
// the instants at which the states change next.
func (p *Plan) place(live []signer.Key, waiting map[int]bool, r Rules, now time.Time, lastSigned map[int]time.Time) []time.Time {
	active := activeIndex(live, waiting, now)
	var next []time.Time
	destroyable := true
	for i, k := range live {
		ks := KeyState{Key: k}
		switch {
		case i == active:
			ks.State = Active
		case i > active:
			ks.State = Pending
			ks.Waiting = waiting[k.Version]
			next = append(next, pendingNext(k, ks.Waiting, now))
		default:
			ks = retiring(k, live[i+1], r, lastSigned)
			// Destroy in version order only: a key is destroyed once it and
			// every older key have passed their retires_at.
			if destroyable && !ks.RetiresAt.After(now) {
				p.DestroyBelow = live[i+1].Version
				continue
			}
			destroyable = false
			next = append(next, ks.RetiresAt)
		}
		p.Published = append(p.Published, ks)
	}
	for i := range p.Published {
		if p.Published[i].State == Active {
			p.Active = &p.Published[i]
		}
	}
	return next
}

// retiring is the state of k, which successor replaced: verify-only from
// the later of the successor's activates_at and k's last signature, until
// the longer of its record's and this replica's retire-after past that.
func retiring(k, successor signer.Key, r Rules, lastSigned map[int]time.Time) KeyState {
	ks := KeyState{Key: k, State: Retiring, DeactivatedAt: successor.ActivatesAt}
	if t := lastSigned[k.Version]; t.After(ks.DeactivatedAt) {
		ks.DeactivatedAt = t
	}
	ks.RetiresAt = ks.DeactivatedAt.Add(max(k.RetireAfter, r.RetireAfter))
	return ks
}

// earliestAfter is the earliest of ts after now (zero: none).
func earliestAfter(ts []time.Time, now time.Time) time.Time {
	var first time.Time
	for _, t := range ts {
		if t.After(now) && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	return first
}

// activeIndex is rule 2: the active key is the newest that has reached
// activates_at (a waiting gated key has not, whatever its time). If none
// has (a replica whose clock lags the bootstrap or emergency key's
// creation), the oldest live key is the active one: it has no predecessor.
func activeIndex(live []signer.Key, waiting map[int]bool, now time.Time) int {
	active := 0
	for i, k := range live {
		if !waiting[k.Version] && !k.ActivatesAt.After(now) {
			active = i
		}
	}
	return active
}

// NewRecord is the lifecycle record of version v created at now.
func NewRecord(v int, alg signer.Algorithm, r Rules, now time.Time, emergency bool) signer.Record {
	// Records keep whole seconds (they are shown as RFC 3339). created_at
	// rounds down and activates_at up, so a key is always published for at
	// least the full propagation delay before it signs.
	rec := signer.Record{
		Version:          v,
		Algorithm:        alg,
		CreatedAt:        now.UTC().Truncate(time.Second),
		Schedule:         r.ScheduleSpec,
		PropagationDelay: r.PropagationDelay,
		RetireAfter:      r.RetireAfter,
		Emergency:        emergency,
	}
	rec.ActivatesAt = ceilSecond(now.UTC().Add(r.PropagationDelay))
	if emergency || v == 1 {
		rec.ActivatesAt = rec.CreatedAt // bootstrap and emergency keys sign at once
		return rec
	}
	if len(r.ExpectedClients) > 0 {
		rec.ExpectedClients = append([]string(nil), r.ExpectedClients...)
		rec.InstanceWindow = r.InstanceWindow
		rec.ActivationMaxWait = r.ActivationMaxWait
	}
	return rec
}

func ceilSecond(t time.Time) time.Time {
	if c := t.Truncate(time.Second); !c.Equal(t) {
		return c.Add(time.Second)
	}
	return t
}

// withRecords fills in the record of a key the backend holds without one (a
// crash between creating the key and writing its record; or the first key,
// made by `keyd bootstrap`): the oldest key is the bootstrap key, active at
// once; any other is a normal rotation, pending for the propagation delay.
// The manager then writes this record to the backend once, so that replicas
// with other settings follow it instead of deriving their own.
func withRecords(keys []signer.Key, r Rules) []signer.Key {
	out := make([]signer.Key, len(keys))
	copy(out, keys)
	for i := range out {
		if out[i].HasRecord {
			continue
		}
		rec := NewRecord(out[i].Version, out[i].Algorithm, r, out[i].CreatedAt, false)
		rec.ActivatesAt = rec.CreatedAt.Add(r.PropagationDelay)
		// Never gated: until the record is written the key follows it
		// ungated, and must not turn back to waiting once it is written.
		rec.ExpectedClients, rec.InstanceWindow, rec.ActivationMaxWait = nil, 0, 0
		if i == 0 {
			rec.ActivatesAt = rec.CreatedAt
		}
		out[i].Record = rec
	}
	return out
}

// mismatch compares this replica's settings with those the newest record was
// created under. Only keys with a record are compared.
func mismatch(rec signer.Record, r Rules) string {
	switch {
	case rec.Schedule == "" && rec.PropagationDelay == 0 && rec.RetireAfter == 0:
		return "" // a record without settings (key created outside keyd)
	case rec.Schedule != r.ScheduleSpec:
		return "rotation-schedule " + q(r.ScheduleSpec) + " differs from the newest key's " + q(rec.Schedule)
	case rec.PropagationDelay != r.PropagationDelay:
		return "propagation-delay " + r.PropagationDelay.String() + " differs from the newest key's " + rec.PropagationDelay.String()
	case rec.RetireAfter != r.RetireAfter:
		return "max-token-lifetime + 2 × clock-skew = " + r.RetireAfter.String() + " differs from the newest key's " + rec.RetireAfter.String()
	}
	return ""
}

func q(s string) string { return `"` + s + `"` }

// Observed propagation (docs/design.md "Observed propagation"). A key whose record
// names expected clients activates at the later of its activates_at and the
// moment every expected client is confirmed for its version, and at
// activates_at + max wait at the latest. The manager writes the actual
// activation once (create-only), so every replica follows one time.

// DefaultInstanceWindow is the instance window of a record that has none.
const DefaultInstanceWindow = time.Hour

// Observed is what the gate reads: the fetches, confirmations and actual
// activations every replica shares through the store.
type Observed = signer.Observed

// ClientGate is one expected client of a gated key at one instant.
type ClientGate struct {
	Client    string
	Confirmed bool
	By        string // signer.ByFetch or signer.ByAdmin; "" while unconfirmed
	// Stored: the confirmation is in the store; otherwise the fetches show
	// it now and the manager stores it (once confirmed, always confirmed).
	Stored bool
	// Live instances fetched within the window; Holding of them were
	// served a document holding the key.
	Live, Holding int
	Instances     []signer.Observation // every instance of the client seen, live or not
}

// GateStatus is the gate of one waiting key at one instant.
type GateStatus struct {
	Version   int
	Clients   []ClientGate // in the record's order
	Confirmed bool         // every expected client is
	Deadline  time.Time    // activates_at + max wait: the key activates then at the latest
	// Activate: the key activates now (the manager writes its activation).
	Activate bool
	// Unconfirmed names the expected clients not confirmed (with Activate:
	// the key activates at its deadline without them).
	Unconfirmed []string
}

// Gate is the propagation rule of a gated key k that has not activated, as
// of now: each expected client is confirmed when the store holds its
// confirmation, or when every instance of it that fetched within the
// window was served a document holding k, and at least one was. Gating only
// ever delays activation: never before activates_at.
func Gate(k signer.Key, obs *Observed, now time.Time) GateStatus {
	g := GateStatus{Version: k.Version, Confirmed: true, Deadline: k.ActivatesAt.Add(k.ActivationMaxWait)}
	for _, c := range k.ExpectedClients {
		cg := clientGate(c, k, obs, now)
		if !cg.Confirmed {
			g.Confirmed = false
			g.Unconfirmed = append(g.Unconfirmed, c)
		}
		g.Clients = append(g.Clients, cg)
	}
	g.Activate = !now.Before(k.ActivatesAt) && (g.Confirmed || !now.Before(g.Deadline))
	return g
}

func clientGate(client string, k signer.Key, obs *Observed, now time.Time) ClientGate {
	cg := ClientGate{Client: client}
	if obs == nil {
		return cg
	}
	window := k.InstanceWindow
	if window <= 0 {
		window = DefaultInstanceWindow
	}
	for _, o := range obs.Observations {
		if o.Client != client {
			continue
		}
		cg.Instances = append(cg.Instances, o)
		if now.Sub(o.LastFetch) > window {
			continue // silent longer than the window: dropped out
		}
		cg.Live++
		if o.MaxVersion >= k.Version {
			cg.Holding++
		}
	}
	for _, c := range obs.Confirmations {
		if c.Client == client && c.Version == k.Version {
			cg.Confirmed, cg.By, cg.Stored = true, c.By, true
			return cg
		}
	}
	if cg.Live > 0 && cg.Holding == cg.Live {
		cg.Confirmed, cg.By = true, signer.ByFetch
	}
	return cg
}

// withActivations returns keys with each gated key's activates_at replaced
// by its written activation, and the versions of the gated keys that have
// none yet (waiting).
func withActivations(keys []signer.Key, obs *Observed) ([]signer.Key, map[int]bool) {
	var waiting map[int]bool
	out := keys
	for i, k := range keys {
		if !k.HasRecord || !k.Gated() {
			continue
		}
		if obs != nil {
			if a, ok := obs.Activations[k.Version]; ok {
				if &out[0] == &keys[0] {
					out = append([]signer.Key(nil), keys...)
				}
				out[i].ActivatesAt = laterOf(a.At, k.ActivatesAt) // gating only delays
				continue
			}
		}
		if waiting == nil {
			waiting = map[int]bool{}
		}
		waiting[k.Version] = true
	}
	return out, waiting
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// pendingNext is when a pending key's plan changes next: its activates_at,
// and for a waiting key past it, its deadline.
func pendingNext(k signer.Key, waiting bool, now time.Time) time.Time {
	if waiting && !now.Before(k.ActivatesAt) {
		return k.ActivatesAt.Add(k.ActivationMaxWait)
	}
	return k.ActivatesAt
}
