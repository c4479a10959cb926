package rotation

import (
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/openedx-keyd/keyd/internal/signer"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func monthly(t *testing.T) Rules {
	t.Helper()
	s, err := cron.ParseStandard("0 0 1 * *")
	if err != nil {
		t.Fatal(err)
	}
	return Rules{Schedule: s, ScheduleSpec: "0 0 1 * *", PropagationDelay: 24 * time.Hour, RetireAfter: time.Hour + 2*time.Minute}
}

// key is a version created at c under rules r (emergency when em).
func key(r Rules, v int, c time.Time, em bool) signer.Key {
	return signer.Key{Record: NewRecord(v, signer.RS512, r, c, em), HasRecord: true}
}

type want struct {
	states       map[int]State // published versions and their states
	destroyBelow int
	bootstrap    bool
	due          bool
	mismatch     bool
	next         time.Time // NextTransition, when non-zero
}

func TestEvaluate(t *testing.T) {
	r := monthly(t)
	jan, feb, mar := t0, t0.AddDate(0, 1, 0), t0.AddDate(0, 2, 0)
	day := 24 * time.Hour
	retire := r.RetireAfter
	other := r
	other.PropagationDelay = time.Hour

	tests := []struct {
		name string
		keys []signer.Key
		now  time.Time
		want want
	}{
		{"no key: bootstrap", nil, jan, want{bootstrap: true}},
		{"bootstrap key is active at once", []signer.Key{key(r, 1, jan, false)}, jan,
			want{states: map[int]State{1: Active}, next: feb}},
		{"rotation due on the schedule", []signer.Key{key(r, 1, jan, false)}, feb,
			want{states: map[int]State{1: Active}, due: true}},
		{"new key pending during propagation; no second rotation", []signer.Key{key(r, 1, jan, false), key(r, 2, feb, false)}, feb.Add(12 * time.Hour),
			want{states: map[int]State{1: Active, 2: Pending}, next: feb.Add(day)}},
		{"pending key activates after the propagation delay", []signer.Key{key(r, 1, jan, false), key(r, 2, feb, false)}, feb.Add(day),
			want{states: map[int]State{1: Retiring, 2: Active}, next: feb.Add(day + retire)}},
		{"retiring key stays published until retires_at", []signer.Key{key(r, 1, jan, false), key(r, 2, feb, false)}, feb.Add(day + retire - time.Second),
			want{states: map[int]State{1: Retiring, 2: Active}, next: feb.Add(day + retire)}},
		{"retired key destroyed at retires_at", []signer.Key{key(r, 1, jan, false), key(r, 2, feb, false)}, feb.Add(day + retire),
			want{states: map[int]State{2: Active}, destroyBelow: 2, next: mar}},
		{"keyd down for a month: one rotation due, not two", []signer.Key{key(r, 1, jan, false)}, mar.Add(15 * day),
			want{states: map[int]State{1: Active}, due: true}},
		{"replica whose clock lags keeps the old key active", []signer.Key{key(r, 1, jan, false), key(r, 2, feb, false)}, feb.Add(day - 2*time.Second),
			want{states: map[int]State{1: Active, 2: Pending}, next: feb.Add(day)}},
		{"lagging clock before the bootstrap key's creation", []signer.Key{key(r, 1, jan, false)}, jan.Add(-3 * time.Second),
			want{states: map[int]State{1: Active}, next: feb}},
		{"version made by another replica follows its record", []signer.Key{key(r, 1, jan, false), key(r, 2, feb.Add(7*time.Minute), false)}, feb.Add(day),
			want{states: map[int]State{1: Active, 2: Pending}, next: feb.Add(day + 7*time.Minute)}},
		{"emergency key: every older key destroyed at once", []signer.Key{key(r, 1, jan, false), key(r, 2, feb, false), key(r, 3, feb.Add(time.Hour), true)}, feb.Add(time.Hour),
			want{states: map[int]State{3: Active}, destroyBelow: 3}},
		{"key without a record is pending for the propagation delay", []signer.Key{key(r, 1, jan, false), {Record: signer.Record{Version: 2, Algorithm: signer.RS512, CreatedAt: feb}}}, feb.Add(time.Hour),
			want{states: map[int]State{1: Active, 2: Pending}, next: feb.Add(day)}},
		{"settings differ from the newest record", []signer.Key{key(other, 1, jan, false)}, feb,
			want{states: map[int]State{1: Active}, due: true, mismatch: true}},
		{"destroy in version order only", []signer.Key{
			{Record: signer.Record{Version: 1, Algorithm: signer.RS512, CreatedAt: jan, ActivatesAt: jan, RetireAfter: 40 * day, Schedule: r.ScheduleSpec, PropagationDelay: r.PropagationDelay}, HasRecord: true},
			key(r, 2, feb, false), key(r, 3, mar, false)}, mar.Add(day + retire),
			want{states: map[int]State{1: Retiring, 2: Retiring, 3: Active}, next: feb.Add(day + 40*day)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := EvaluateObserved(tt.keys, r, tt.now, nil, nil)
			got := want{states: map[int]State{}, destroyBelow: p.DestroyBelow, bootstrap: p.Bootstrap, due: p.RotationDue, mismatch: p.Mismatch != ""}
			for _, k := range p.Published {
				got.states[k.Version] = k.State
			}
			if tt.want.states == nil {
				tt.want.states = map[int]State{}
			}
			if !equalStates(got.states, tt.want.states) || got.destroyBelow != tt.want.destroyBelow ||
				got.bootstrap != tt.want.bootstrap || got.due != tt.want.due || got.mismatch != tt.want.mismatch {
				t.Errorf("got %+v (mismatch %q)\nwant %+v", got, p.Mismatch, tt.want)
			}
			if !tt.want.next.IsZero() && !p.NextTransition.Equal(tt.want.next) {
				t.Errorf("next transition = %v, want %v", p.NextTransition, tt.want.next)
			}
			actives := 0
			for _, k := range p.Published {
				if k.State == Active {
					actives++
				}
			}
			if !p.Bootstrap && actives != 1 {
				t.Errorf("%d active keys, want exactly 1", actives)
			}
		})
	}
}

func equalStates(a, b map[int]State) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRetiresAtUsesTheLongerOfRecordAndConfig(t *testing.T) {
	r := monthly(t)
	keys := []signer.Key{key(r, 1, t0, false), key(r, 2, t0.AddDate(0, 1, 0), false)}
	longer := r
	longer.RetireAfter = 3 * time.Hour // this replica issues longer tokens
	p := EvaluateObserved(keys, longer, t0.AddDate(0, 1, 1), nil, nil)
	want := keys[1].ActivatesAt.Add(3 * time.Hour)
	if got := p.Published[0].RetiresAt; !got.Equal(want) {
		t.Fatalf("retires_at = %v, want %v", got, want)
	}
}

func TestNewRecord(t *testing.T) {
	r := monthly(t)
	now := t0.Add(1500 * time.Millisecond)
	for _, tt := range []struct {
		v         int
		emergency bool
		wantDelay time.Duration
	}{{1, false, 0}, {2, false, r.PropagationDelay}, {3, true, 0}} {
		rec := NewRecord(tt.v, signer.ES256, r, now, tt.emergency)
		activates := rec.CreatedAt // bootstrap and emergency keys sign at once
		if tt.wantDelay > 0 {
			activates = t0.Add(2 * time.Second).Add(tt.wantDelay) // now + delay, rounded up
		}
		if !rec.CreatedAt.Equal(t0.Add(time.Second)) || !rec.ActivatesAt.Equal(activates) ||
			rec.Schedule != r.ScheduleSpec || rec.RetireAfter != r.RetireAfter || rec.Emergency != tt.emergency {
			t.Errorf("NewRecord(%d, emergency=%v) = %+v", tt.v, tt.emergency, rec)
		}
	}
}

// A retiring key retires from its last signature when that is later than
// its successor's activation (issue 12 item 1).
func TestEvaluateRetiresFromTheLastSignature(t *testing.T) {
	r := monthly(t)
	keys := []signer.Key{key(r, 1, t0, false), key(r, 2, t0.Add(time.Hour), false)}
	act := keys[1].ActivatesAt
	for _, tc := range []struct {
		name string
		last time.Time
		want time.Time
	}{
		{"signed before the activation", act.Add(-time.Minute), act.Add(r.RetireAfter)},
		{"signed after the activation", act.Add(5 * time.Second), act.Add(5*time.Second + r.RetireAfter)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := EvaluateObserved(keys, r, act.Add(r.RetireAfter+time.Second), map[int]time.Time{1: tc.last}, nil)
			destroyed := p.DestroyBelow == 2
			if wantGone := !tc.want.After(act.Add(r.RetireAfter + time.Second)); destroyed != wantGone {
				t.Fatalf("DestroyBelow = %d, want destroyed=%v", p.DestroyBelow, wantGone)
			}
			if !destroyed && !p.Published[0].RetiresAt.Equal(tc.want) {
				t.Fatalf("retires_at = %v, want %v", p.Published[0].RetiresAt, tc.want)
			}
		})
	}
}
