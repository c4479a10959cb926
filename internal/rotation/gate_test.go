package rotation

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// gated is monthly rules with ecommerce and notes expected, a 1h instance
// window and a 7-day max wait.
func gated(t *testing.T) Rules {
	r := monthly(t)
	r.ExpectedClients = []string{"ecommerce", "notes"}
	r.InstanceWindow = time.Hour
	r.ActivationMaxWait = 7 * 24 * time.Hour
	return r
}

func obsv(client, inst string, at time.Time, maxV int) signer.Observation {
	return signer.Observation{Client: client, Instance: inst, LastFetch: at, MaxVersion: maxV}
}

// TestGate is the propagation rule: when a gated key (version 2, created at
// feb, activates_at feb+24h) may activate, and why not.
func TestGate(t *testing.T) {
	r := gated(t)
	feb := t0.AddDate(0, 1, 0)
	k := key(r, 2, feb, false)
	at := k.ActivatesAt
	both := func(v int, when time.Time) []signer.Observation {
		return []signer.Observation{obsv("ecommerce", "e1", when, v), obsv("ecommerce", "e2", when, v), obsv("notes", "n1", when, v)}
	}
	admin := func(client string) signer.Confirmation {
		return signer.Confirmation{Client: client, Version: 2, By: signer.ByAdmin, At: feb}
	}
	tests := []struct {
		name        string
		obs         Observed
		now         time.Time
		activate    bool
		unconfirmed []string
		by          map[string]string // client -> confirmed_by ("" unconfirmed)
		live        map[string][2]int // client -> holding, live
	}{
		{"unconfirmed: waits past activates_at", Observed{Observations: both(1, at)}, at.Add(time.Hour / 2),
			false, []string{"ecommerce", "notes"}, map[string]string{"ecommerce": "", "notes": ""}, map[string][2]int{"ecommerce": {0, 2}, "notes": {0, 1}}},
		{"confirmed early: still not before activates_at", Observed{Observations: both(2, at.Add(-time.Minute))}, at.Add(-time.Second),
			false, nil, map[string]string{"ecommerce": signer.ByFetch, "notes": signer.ByFetch}, nil},
		{"confirmed early: activates at activates_at", Observed{Observations: both(2, at.Add(-time.Minute))}, at,
			true, nil, map[string]string{"ecommerce": signer.ByFetch, "notes": signer.ByFetch}, nil},
		{"one lagging instance holds the client back", Observed{Observations: append(both(2, at), obsv("ecommerce", "e3", at, 1))}, at.Add(time.Minute),
			false, []string{"ecommerce"}, map[string]string{"ecommerce": "", "notes": signer.ByFetch}, map[string][2]int{"ecommerce": {2, 3}}},
		{"an instance silent longer than the window drops out", Observed{Observations: append(both(2, at), obsv("ecommerce", "e3", at.Add(-time.Hour-time.Second), 1))}, at,
			true, nil, map[string]string{"ecommerce": signer.ByFetch, "notes": signer.ByFetch}, map[string][2]int{"ecommerce": {2, 2}}},
		{"at least one live instance is needed", Observed{Observations: []signer.Observation{obsv("ecommerce", "e1", at, 2), obsv("notes", "n1", at.Add(-2*time.Hour), 2)}}, at.Add(time.Minute),
			false, []string{"notes"}, map[string]string{"ecommerce": signer.ByFetch, "notes": ""}, map[string][2]int{"notes": {0, 0}}},
		{"no instance at all: unconfirmed", Observed{}, at.Add(time.Minute),
			false, []string{"ecommerce", "notes"}, map[string]string{"ecommerce": "", "notes": ""}, nil},
		{"admin confirmation of a static client", Observed{Observations: both(2, at)[:2], Confirmations: []signer.Confirmation{admin("notes")}}, at.Add(time.Minute),
			true, nil, map[string]string{"ecommerce": signer.ByFetch, "notes": signer.ByAdmin}, nil},
		{"a stored confirmation stays although a lagging instance appears", Observed{Observations: append(both(2, at), obsv("notes", "n9", at, 1)),
			Confirmations: []signer.Confirmation{{Client: "notes", Version: 2, By: signer.ByFetch, At: at}}}, at.Add(time.Minute),
			true, nil, map[string]string{"ecommerce": signer.ByFetch, "notes": signer.ByFetch}, map[string][2]int{"notes": {1, 2}}},
		{"a confirmation of another version does not count", Observed{Observations: both(1, at), Confirmations: []signer.Confirmation{{Client: "notes", Version: 1, By: signer.ByAdmin}}}, at,
			false, []string{"ecommerce", "notes"}, map[string]string{"ecommerce": "", "notes": ""}, nil},
		{"max wait: activates without the unconfirmed clients", Observed{Observations: both(2, at.Add(r.ActivationMaxWait))[:2]}, at.Add(r.ActivationMaxWait),
			true, []string{"notes"}, map[string]string{"ecommerce": signer.ByFetch, "notes": ""}, nil},
		{"just before the max wait: still waits", Observed{Observations: both(2, at.Add(r.ActivationMaxWait))[:2]}, at.Add(r.ActivationMaxWait - time.Second),
			false, []string{"notes"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := Gate(k, &tt.obs, tt.now)
			if g.Activate != tt.activate || !slices.Equal(g.Unconfirmed, tt.unconfirmed) {
				t.Errorf("activate=%v unconfirmed=%v, want %v %v", g.Activate, g.Unconfirmed, tt.activate, tt.unconfirmed)
			}
			if g.Confirmed != (len(tt.unconfirmed) == 0) || !g.Deadline.Equal(at.Add(r.ActivationMaxWait)) {
				t.Errorf("confirmed=%v deadline=%v", g.Confirmed, g.Deadline)
			}
			for _, c := range g.Clients {
				if want, ok := tt.by[c.Client]; ok && (c.By != want || c.Confirmed != (want != "")) {
					t.Errorf("%s: confirmed=%v by %q, want %q", c.Client, c.Confirmed, c.By, want)
				}
				if want, ok := tt.live[c.Client]; ok && (c.Holding != want[0] || c.Live != want[1]) {
					t.Errorf("%s: %d of %d instances hold it, want %d of %d", c.Client, c.Holding, c.Live, want[0], want[1])
				}
			}
		})
	}
}

// TestEvaluateGated: the lifecycle rules around a gated key — it waits and
// never signs until its activation is written; the written time becomes
// its activates_at and the predecessor retires from it; emergency keys and
// keys created without expected clients are never gated; replicas reading
// the same observations decide the same.
func TestEvaluateGated(t *testing.T) {
	r := gated(t)
	jan, feb := t0, t0.AddDate(0, 1, 0)
	k1, k2 := key(r, 1, jan, false), key(r, 2, feb, false)
	at := k2.ActivatesAt
	if !k2.Gated() || k1.Gated() || !slices.Equal(k2.ExpectedClients, r.ExpectedClients) || k2.ActivationMaxWait != r.ActivationMaxWait {
		t.Fatalf("records: v1 gated=%v, v2 gated=%v %+v", k1.Gated(), k2.Gated(), k2.Record)
	}
	if em := key(r, 2, feb, true); em.Gated() {
		t.Fatal("an emergency key is gated")
	}
	keys := []signer.Key{k1, k2}

	// Past activates_at, nobody confirmed: v2 waits, v1 signs.
	p := EvaluateObserved(keys, r, at.Add(time.Hour), nil, &Observed{})
	if p.Active.Version != 1 || p.Gate == nil || p.Gate.Activate || !p.Published[1].Waiting {
		t.Fatalf("unconfirmed: active %d gate %+v", p.Active.Version, p.Gate)
	}
	if want := at.Add(r.ActivationMaxWait); !p.NextTransition.Equal(want) {
		t.Errorf("next transition %v, want the deadline %v", p.NextTransition, want)
	}
	snap := &Snapshot{Keys: []Published{{KeyState: p.Published[0]}, {KeyState: p.Published[1]}}}
	if k, _ := snap.SigningAt(at.Add(time.Hour)); k.Version != 1 {
		t.Errorf("a waiting key signs at request time: version %d", k.Version)
	}
	// Without observations (nil) the key waits too.
	if p := EvaluateObserved(keys, r, at.Add(time.Hour), nil, nil); p.Active.Version != 1 {
		t.Errorf("without observations: active %d", p.Active.Version)
	}

	// Its activation written 3h late: v2 active from then, v1 retires from it.
	actual := at.Add(3 * time.Hour)
	obs := &Observed{Activations: map[int]signer.Activation{2: {Version: 2, At: actual}}}
	p = EvaluateObserved(keys, r, actual.Add(time.Minute), nil, obs)
	if p.Active.Version != 2 || !p.Active.ActivatesAt.Equal(actual) || p.Gate != nil {
		t.Fatalf("activated: active %+v gate %v", p.Active, p.Gate)
	}
	if old := p.Published[0]; old.State != Retiring || !old.RetiresAt.Equal(actual.Add(r.RetireAfter)) {
		t.Errorf("v1 %s retires at %v, want %v", old.State, old.RetiresAt, actual.Add(r.RetireAfter))
	}
	if keys[1].ActivatesAt != at {
		t.Error("EvaluateObserved changed its input")
	}

	// A key created before the flag was set is not gated: it activates at activates_at.
	plain := monthly(t)
	p = EvaluateObserved([]signer.Key{k1, key(plain, 2, feb, false)}, r, at, nil, &Observed{})
	if p.Active.Version != 2 || p.Gate != nil {
		t.Errorf("ungated key: active %d gate %v", p.Active.Version, p.Gate)
	}
	// An emergency key is active at once, whatever the observations.
	p = EvaluateObserved([]signer.Key{k1, key(r, 2, feb, true)}, r, feb, nil, &Observed{})
	if p.Active.Version != 2 || p.Gate != nil {
		t.Errorf("emergency: active %d gate %v", p.Active.Version, p.Gate)
	}

	// Replicas with the same observations decide the same, whatever their
	// own settings (the record decides).
	other := r
	other.ExpectedClients, other.ActivationMaxWait, other.InstanceWindow = []string{"discovery"}, time.Hour, time.Minute
	o := &Observed{Observations: []signer.Observation{obsv("ecommerce", "e1", at, 2), obsv("notes", "n1", at, 1)}}
	for _, now := range []time.Time{at, at.Add(time.Hour), at.Add(r.ActivationMaxWait)} {
		a, b := EvaluateObserved(keys, r, now, nil, o), EvaluateObserved(keys, other, now, nil, o)
		if !reflect.DeepEqual(a.Gate, b.Gate) || a.Active.Version != b.Active.Version {
			t.Errorf("at %v replicas disagree: %+v vs %+v", now, a.Gate, b.Gate)
		}
	}
}

// TestRecordlessKeyNeverFlipsBackToWaiting: a version Vault holds without a
// record (the record write failed after the transit rotate) follows the
// record the rules derive for it; once that derived record is written, the
// key must be in the same state. A gated derivation turned a key that had
// activated (and signed) back into a waiting one, and its predecessor
// active again.
func TestRecordlessKeyNeverFlipsBackToWaiting(t *testing.T) {
	r := gated(t)
	jan, feb := t0, t0.AddDate(0, 1, 0)
	k1 := key(r, 1, jan, false)
	lost := signer.Key{Record: signer.Record{Version: 2, Algorithm: signer.RS512, CreatedAt: feb}}
	now := feb.Add(r.PropagationDelay + time.Hour)
	p := EvaluateObserved([]signer.Key{k1, lost}, r, now, nil, &Observed{})
	if p.Active.Version != 2 {
		t.Fatalf("before the record is written: active %d", p.Active.Version)
	}
	written := p.Published[1].Key
	written.HasRecord = true // what writeMissingRecords stores
	p = EvaluateObserved([]signer.Key{k1, written}, r, now, nil, &Observed{})
	if p.Active.Version != 2 || p.Published[1].Waiting {
		t.Fatalf("after the derived record is written: active %d, v2 waiting %v", p.Active.Version, p.Published[1].Waiting)
	}
}

// TestWrittenActivationNeverBeforeActivatesAt: gating only ever delays; an
// activation in the store earlier than the record's activates_at (a store
// that outlived its keys, a hand-written entry) does not make the key sign
// early, neither in the plan nor at request time.
func TestWrittenActivationNeverBeforeActivatesAt(t *testing.T) {
	r := gated(t)
	jan, feb := t0, t0.AddDate(0, 1, 0)
	k1, k2 := key(r, 1, jan, false), key(r, 2, feb, false)
	obs := &Observed{Activations: map[int]signer.Activation{2: {Version: 2, At: feb}}}
	now := feb.Add(time.Hour) // before activates_at (feb+24h)
	p := EvaluateObserved([]signer.Key{k1, k2}, r, now, nil, obs)
	if p.Active.Version != 1 {
		t.Fatalf("active %d before v2's activates_at %v", p.Active.Version, k2.ActivatesAt)
	}
	snap := &Snapshot{Keys: []Published{{KeyState: p.Published[0]}, {KeyState: p.Published[1]}}}
	if k, _ := snap.SigningAt(now); k.Version != 1 {
		t.Errorf("version %d signs before its activates_at", k.Version)
	}
	if k, _ := snap.SigningAt(k2.ActivatesAt); k.Version != 2 {
		t.Errorf("at activates_at version %d signs, want 2", k.Version)
	}
}
