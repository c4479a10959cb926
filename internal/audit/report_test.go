package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// chainBuilder writes hand-built chains: each event at the builder's clock.
type chainBuilder struct {
	t   *testing.T
	now time.Time
	evs []Event
}

func newBuilder(t *testing.T, start string) *chainBuilder {
	return &chainBuilder{t: t, now: mustTime(t, start)}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// at sets the clock to s (RFC 3339).
func (b *chainBuilder) at(s string) *chainBuilder { b.now = mustTime(b.t, s); return b }

// after moves the clock on by d.
func (b *chainBuilder) after(d time.Duration) *chainBuilder { b.now = b.now.Add(d); return b }

// add appends an event for version v at the clock.
func (b *chainBuilder) add(typ Type, v int, actor, reason string) *chainBuilder {
	b.t.Helper()
	ev := Event{Seq: int64(len(b.evs) + 1), Time: b.now.UTC().Format(TimeFormat), Type: typ, Version: v,
		KID: fmt.Sprintf("kid-%d", v), Actor: actor, Reason: reason, PrevHash: ZeroHash}
	if n := len(b.evs); n > 0 {
		ev.PrevHash = b.evs[n-1].Hash
	}
	b.evs = append(b.evs, rehash(b.t, ev))
	return b
}

// rotate is a normal rotation to v at the clock, activated delay later,
// with the previous key retired then.
func (b *chainBuilder) rotate(v int, delay time.Duration) *chainBuilder {
	b.add(Created, v, "scheduler", "")
	b.after(delay)
	b.add(Activated, v, "scheduler", "")
	return b.add(Retired, v-1, "scheduler", "verify-only")
}

func (b *chainBuilder) events() []Event { return slices.Clone(b.evs) }

// daily is the policy of the hand-built chains: a rotation every day at
// midnight UTC, published an hour before it signs.
func daily(t *testing.T) Policy {
	t.Helper()
	s, err := cron.ParseStandard("0 0 * * *")
	if err != nil {
		t.Fatal(err)
	}
	return Policy{ScheduleSpec: "0 0 * * *", Schedule: s, PropagationDelay: time.Hour, MaxTokenLifetime: time.Hour,
		ClockSkew: time.Minute, ActivationMaxWait: 168 * time.Hour, LateAfter: time.Hour, Source: "test"}
}

// held lists versions as the backend would hold them.
func held(vs ...int) []KeyVersion {
	out := []KeyVersion{}
	for _, v := range vs {
		out = append(out, KeyVersion{Version: v, KID: fmt.Sprintf("kid-%d", v)})
	}
	return out
}

func build(t *testing.T, evs []Event, versions []KeyVersion, pol Policy, now string) Report {
	t.Helper()
	r, err := BuildReport(InspectEvents(evs, versions, nil), pol, Period{Now: mustTime(t, now)}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func findingKinds(r Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.Kind)
	}
	return out
}

func reportKey(t *testing.T, r Report, v int) KeyFacts {
	t.Helper()
	for _, k := range r.Keys {
		if k.Version == v {
			return k
		}
	}
	t.Fatalf("no key version %d in the report", v)
	return KeyFacts{}
}

func segStates(k KeyFacts) string {
	var s []string
	for _, seg := range k.Segments {
		s = append(s, seg.State)
	}
	return strings.Join(s, ",")
}

// healthy is three daily rotations on time, each old key destroyed
// max-token-lifetime + 2 × skew after it retired.
func healthy(t *testing.T) *chainBuilder {
	b := newBuilder(t, "2026-03-01T00:00:00Z").add(Bootstrap, 1, "keyd bootstrap", "first key").add(Activated, 1, "scheduler", "")
	for v := 2; v <= 4; v++ {
		b.at(fmt.Sprintf("2026-03-%02dT00:00:03Z", v)).rotate(v, time.Hour)
		b.after(62*time.Minute).add(Destroyed, v-1, "scheduler", "retired")
	}
	return b
}

func TestReportHealthyChain(t *testing.T) {
	r := build(t, healthy(t).events(), held(4), daily(t), "2026-03-04T12:00:00Z")
	if r.Chain.Verdict != VerdictIntact || !r.Chain.Valid || r.Chain.Records != 14 || r.Chain.HeadSeq != 14 {
		t.Fatalf("chain = %+v", r.Chain)
	}
	if len(r.Findings) != 0 {
		t.Fatalf("findings = %+v, want none", r.Findings)
	}
	if got := reportKey(t, r, 2); segStates(got) != "pending,active,retiring" || got.State != "destroyed" || got.Held != "no" {
		t.Fatalf("key 2 = %s %s held %s", segStates(got), got.State, got.Held)
	}
	if got := reportKey(t, r, 4); segStates(got) != "pending,active" || got.State != SegActive || !got.Segments[1].Open {
		t.Fatalf("key 4 = %+v", got)
	}
	var statuses []string
	for _, s := range r.Schedule {
		statuses = append(statuses, s.Status)
	}
	if want := "on_time,on_time,on_time,upcoming"; strings.Join(statuses, ",") != want {
		t.Fatalf("schedule = %v, want %s", statuses, want)
	}
	if r.Totals.Rotations != 3 || r.Totals.OnTime != 3 || r.Totals.Keys != 4 {
		t.Fatalf("totals = %+v", r.Totals)
	}
}

func TestReportScheduleConformance(t *testing.T) {
	b := newBuilder(t, "2026-03-01T00:00:00Z").add(Bootstrap, 1, "keyd bootstrap", "").add(Activated, 1, "scheduler", "")
	b.at("2026-03-02T00:00:04Z").rotate(2, time.Hour)                                                // due 03-02 00:00: on time
	b.at("2026-03-03T05:00:00Z").rotate(3, time.Hour)                                                // due 03-03 00:00: 5h late
	b.at("2026-03-03T12:00:00Z").add(Created, 4, "admin", "by hand")                                 // before 03-04 00:00: on demand
	b.at("2026-03-04T00:30:00Z").add(Activated, 4, "scheduler", "").add(Retired, 3, "scheduler", "") // gated-free but slow
	// v4 was still pending when 03-04 00:00 came: the rotation after it was
	// due once it activated (00:30, rule 1), and never done: missed.
	pol := daily(t)
	r := build(t, b.events(), held(1, 2, 3, 4), pol, "2026-03-06T03:00:00Z")
	want := []struct {
		after, version int
		status, delay  string
		postponed      bool
	}{
		{1, 2, StatusOnTime, "4s", false},
		{2, 3, StatusLate, "5h0m0s", false},
		{3, 4, StatusOnDemand, "", false},
		{4, 0, StatusMissed, "50h30m0s", true},
	}
	if len(r.Schedule) != len(want) {
		t.Fatalf("schedule = %+v", r.Schedule)
	}
	for i, w := range want {
		s := r.Schedule[i]
		if s.AfterVersion != w.after || s.Version != w.version || s.Status != w.status || s.Delay != w.delay || s.Postponed != w.postponed {
			t.Errorf("row %d = %+v, want %+v", i, s, w)
		}
	}
	if kinds := findingKinds(r); !slices.Contains(kinds, FindLateRotation) || !slices.Contains(kinds, FindMissedRotation) {
		t.Fatalf("findings = %v, want late and missed rotations", kinds)
	}
	if r.Findings[0].Kind != FindMissedRotation || r.Findings[0].Severity != SeverityHigh {
		t.Fatalf("first finding = %+v, want the missed rotation (high)", r.Findings[0])
	}

	// A key still pending when its successor falls due: due at its
	// activation (rule 1), and done right after it: on time, postponed.
	b = newBuilder(t, "2026-03-01T00:00:00Z").add(Bootstrap, 1, "keyd bootstrap", "").add(Activated, 1, "scheduler", "")
	b.at("2026-03-01T23:30:00Z").add(Created, 2, "admin", "")
	b.at("2026-03-02T00:30:00Z").add(Activated, 2, "scheduler", "").add(Retired, 1, "scheduler", "")
	b.at("2026-03-02T00:30:05Z").add(Created, 3, "scheduler", "")
	r = build(t, b.events(), held(1, 2, 3), pol, "2026-03-02T01:00:00Z")
	if s := r.Schedule[1]; s.Status != StatusOnTime || !s.Postponed || stamp(s.Due) != "2026-03-02T00:30:00Z" {
		t.Fatalf("postponed row = %+v", s)
	}
	if s := r.Schedule[2]; s.AfterVersion != 3 || s.Status != StatusUpcoming {
		t.Fatalf("last row = %+v, want the rotation after the pending key 3 upcoming", s)
	}
}

// TestReportFindings builds one chain per policy finding.
func TestReportFindings(t *testing.T) {
	base := func() *chainBuilder {
		return newBuilder(t, "2026-03-01T00:00:00Z").add(Bootstrap, 1, "keyd bootstrap", "").add(Activated, 1, "scheduler", "")
	}
	for _, tt := range []struct {
		name     string
		chain    func() *chainBuilder
		versions []KeyVersion
		kind     string
		version  int
		message  string
	}{
		{"two keys active at once", func() *chainBuilder {
			b := base()
			b.at("2026-03-02T00:00:00Z").add(Created, 2, "scheduler", "")
			b.at("2026-03-02T01:00:00Z").add(Activated, 2, "scheduler", "")
			return b.at("2026-03-02T01:10:00Z").add(Retired, 1, "scheduler", "")
		}, held(1, 2), FindOverlappingActive, 2, "both active for 10m0s"},
		{"two keys active within the skew is fine... but not 2m", func() *chainBuilder {
			b := base()
			b.at("2026-03-02T00:00:00Z").add(Created, 2, "scheduler", "")
			b.at("2026-03-02T01:00:00Z").add(Activated, 2, "scheduler", "")
			return b.at("2026-03-02T01:02:00Z").add(Retired, 1, "scheduler", "")
		}, held(1, 2), FindOverlappingActive, 2, "beyond the 1m0s clock skew"},
		{"retired key destroyed early", func() *chainBuilder {
			b := base().at("2026-03-02T00:00:00Z").rotate(2, time.Hour)
			return b.after(30*time.Minute).add(Destroyed, 1, "scheduler", "")
		}, held(2), FindEarlyDestruction, 1, "destroyed 30m0s after it retired, before max-token-lifetime + clock skew (1h1m0s)"},
		{"key destroyed without its event", func() *chainBuilder {
			return base().at("2026-03-02T00:00:00Z").rotate(2, time.Hour)
		}, held(2), FindDestroyedWithoutEvent, 1, "no longer held by the backend but has no destroyed event"},
		{"key held without its creation event (tail cut)", func() *chainBuilder {
			return base()
		}, held(1, 2), FindHeldWithoutEvent, 2, "the audit tail was cut off"},
		{"time runs backwards", func() *chainBuilder {
			b := base().at("2026-03-02T00:00:00Z").add(Created, 2, "scheduler", "")
			return b.at("2026-03-01T23:00:00Z").add(Activated, 2, "scheduler", "")
		}, held(1, 2), FindOutOfOrder, 2, "time runs backwards"},
		{"activated before created", func() *chainBuilder {
			b := base().at("2026-03-02T01:00:00Z").add(Activated, 2, "scheduler", "")
			return b.add(Created, 2, "scheduler", "")
		}, held(1, 2), FindOutOfOrder, 2, "activated before its creation event"},
		{"event after destruction", func() *chainBuilder {
			b := base().at("2026-03-02T00:00:00Z").rotate(2, time.Hour)
			b.after(2*time.Hour).add(Destroyed, 1, "scheduler", "")
			return b.add(Activated, 1, "scheduler", "")
		}, held(2), FindOutOfOrder, 1, "after its destruction"},
		{"activation without confirmation", func() *chainBuilder {
			b := base().at("2026-03-02T00:00:00Z").add(Created, 2, "scheduler", "")
			b.after(time.Hour).add(PropagationConfirmed, 2, "scheduler", "client ecommerce confirmed by fetch")
			b.after(168*time.Hour).add(ActivationUnconfirmed, 2, "scheduler", "activated after the max wait without confirmation from: discovery, notes")
			return b.add(Activated, 2, "scheduler", "").add(Retired, 1, "scheduler", "")
		}, held(1, 2), FindUnconfirmedActivation, 2, "without confirmation from: discovery, notes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := build(t, tt.chain().events(), tt.versions, daily(t), "2026-03-12T06:00:00Z")
			for _, f := range r.Findings {
				if f.Kind == tt.kind && f.Version == tt.version && strings.Contains(f.Message, tt.message) {
					return
				}
			}
			t.Fatalf("findings %+v, want %s for version %d saying %q", r.Findings, tt.kind, tt.version, tt.message)
		})
	}
}

// TestReportNoFindingWithinSkew: a retirement recorded within the clock skew
// of the successor's activation is not two keys active at once.
func TestReportNoFindingWithinSkew(t *testing.T) {
	b := newBuilder(t, "2026-03-01T00:00:00Z").add(Bootstrap, 1, "keyd bootstrap", "").add(Activated, 1, "scheduler", "")
	b.at("2026-03-02T00:00:00Z").add(Created, 2, "scheduler", "")
	b.at("2026-03-02T01:00:00Z").add(Activated, 2, "scheduler", "")
	b.at("2026-03-02T01:00:59Z").add(Retired, 1, "scheduler", "")
	r := build(t, b.events(), held(1, 2), daily(t), "2026-03-02T02:00:00Z")
	if len(r.Findings) != 0 {
		t.Fatalf("findings = %+v, want none", r.Findings)
	}
}

func TestReportGatedAndEmergency(t *testing.T) {
	b := newBuilder(t, "2026-03-01T00:00:00Z").add(Bootstrap, 1, "keyd bootstrap", "").add(Activated, 1, "scheduler", "")
	// v2 is gated: due to sign at 01:00, it waits for two clients until 04:00.
	b.at("2026-03-02T00:00:00Z").add(Created, 2, "scheduler", "")
	b.at("2026-03-02T01:00:05Z").add(PropagationConfirmed, 2, "scheduler", "client ecommerce confirmed by fetch")
	b.at("2026-03-02T04:00:00Z").add(PropagationConfirmed, 2, "alice", "client notes confirmed by admin")
	b.add(Activated, 2, "scheduler", "").add(Retired, 1, "scheduler", "verify-only until 2026-03-02T05:02:00Z")
	b.at("2026-03-02T05:02:05Z").add(Destroyed, 1, "scheduler", "")
	// v3 is pending when the emergency comes: v4 is active at once, and
	// v2 (active) and v3 (pending) are destroyed at once.
	b.at("2026-03-03T00:00:01Z").add(Created, 3, "scheduler", "")
	b.at("2026-03-03T00:20:00Z").add(Emergency, 4, "bob", "INC-7: LMS secret leaked")
	b.add(Destroyed, 2, "bob", "emergency: INC-7: LMS secret leaked").add(Destroyed, 3, "bob", "emergency: INC-7: LMS secret leaked")
	b.after(5*time.Second).add(Activated, 4, "scheduler", "")
	r := build(t, b.events(), held(4), daily(t), "2026-03-03T12:00:00Z")

	if len(r.Findings) != 0 {
		t.Fatalf("findings = %+v, want none (an emergency destroys at once by design)", r.Findings)
	}
	k2 := reportKey(t, r, 2)
	if !k2.Gated || k2.GatedWait != "3h0m0s" || segStates(k2) != "pending,gated_wait,active" || !k2.CutByEmergency || k2.DestroyedBy != "bob" {
		t.Fatalf("key 2 = %+v (%s)", k2, segStates(k2))
	}
	if s := k2.Segments[1]; stamp(&s.From) != "2026-03-02T01:00:00Z" || stamp(&s.To) != "2026-03-02T04:00:00Z" {
		t.Fatalf("gated wait = %+v", s)
	}
	k3 := reportKey(t, r, 3)
	if segStates(k3) != "pending" || !k3.CutByEmergency || k3.State != "destroyed" || k3.Activated != nil {
		t.Fatalf("key 3 = %+v (%s)", k3, segStates(k3))
	}
	k4 := reportKey(t, r, 4)
	if !k4.Emergency || k4.Origin != "emergency" || k4.Actor != "bob" || k4.Reason != "INC-7: LMS secret leaked" ||
		segStates(k4) != "active" || stamp(&k4.Segments[0].From) != "2026-03-03T00:20:00Z" {
		t.Fatalf("key 4 = %+v (%s)", k4, segStates(k4))
	}
	var statuses []string
	for _, s := range r.Schedule {
		statuses = append(statuses, s.Status)
	}
	// v1→v2 on time; v2→v3 on time; v3→v4 is the emergency; v4's next is upcoming.
	if want := "on_time,on_time,emergency,upcoming"; strings.Join(statuses, ",") != want {
		t.Fatalf("schedule = %v, want %s", statuses, want)
	}
	if len(r.Propagation) != 2 || r.Propagation[0].Client != "ecommerce" || r.Propagation[0].Confirmations[0].By != "fetch" ||
		r.Propagation[1].Client != "notes" || r.Propagation[1].Confirmations[0].By != "admin" || r.Propagation[1].Confirmations[0].Actor != "alice" {
		t.Fatalf("propagation = %+v", r.Propagation)
	}
	if r.Totals.Emergencies != 1 {
		t.Fatalf("totals = %+v", r.Totals)
	}
}

// TestReportTamperedChainAgreesWithVerify: an edited record breaks the
// verdict as `keyd audit verify` states it; the events before it stay
// trusted and everything after it is shown, marked untrusted.
func TestReportTamperedChainAgreesWithVerify(t *testing.T) {
	evs := healthy(t).events()
	evs[6].Reason = "nothing to see here" // seq 7, hash not recomputed
	var lines []string
	for _, ev := range evs {
		raw, err := encodeLine(ev)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(raw))
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	versions := held(4)
	_, verifyErr := CheckFile(path, versions, nil)
	if verifyErr == nil {
		t.Fatal("CheckFile of the tampered log = nil")
	}
	v, err := InspectFile(path, versions, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := BuildReport(v, daily(t), Period{Now: mustTime(t, "2026-03-04T12:00:00Z")}, "file")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Chain
	if c.Verdict != VerdictBroken || c.Valid || c.Error != verifyErr.Error() {
		t.Fatalf("chain = %+v; verify says %v", c, verifyErr)
	}
	if c.FirstBad == nil || c.FirstBad.Seq != 7 || c.FirstBad.Problem != string(Edited) || c.TrustedThroughSeq != 6 || c.Untrusted != 8 {
		t.Fatalf("chain = %+v, first bad %+v", c, c.FirstBad)
	}
	if r.Findings[0].Kind != FindChainBroken || r.Findings[0].Seq != 7 {
		t.Fatalf("first finding = %+v", r.Findings[0])
	}
	for _, e := range r.Events {
		if e.Untrusted != (e.Seq >= 7) {
			t.Fatalf("event %d untrusted = %v", e.Seq, e.Untrusted)
		}
	}
	if e := r.Events[6]; e.Reason != "nothing to see here" {
		t.Fatalf("the edited event is shown as stored? %+v", e)
	}
	// Key 1's life (seqs 1, 2, 5, 6) precedes the edited record (seq 7,
	// key 3's creation); keys 2-4 have events at or after it.
	if reportKey(t, r, 1).Untrusted || !reportKey(t, r, 2).Untrusted || !reportKey(t, r, 3).Untrusted {
		t.Fatal("exactly the keys with events at or after the break must be marked untrusted")
	}
	// The rotation v1 → v2 rests on seqs 1 and 3: trusted. Every later one
	// rests on v3's edited creation or what follows it.
	for _, s := range r.Schedule {
		if s.Untrusted != (s.AfterVersion >= 2) {
			t.Fatalf("schedule row after key %d untrusted = %v", s.AfterVersion, s.Untrusted)
		}
	}

	// An intact chain: report and verify agree the other way too.
	v, _ = InspectFile(writeEvents(t, healthy(t).events()), versions, &Head{Seq: 14, Hash: healthy(t).events()[13].Hash})
	r, _ = BuildReport(v, daily(t), Period{Now: mustTime(t, "2026-03-04T12:00:00Z")}, "file")
	if r.Chain.Verdict != VerdictIntact || r.Chain.Error != "" || r.Chain.TrustedThroughSeq != 14 || r.Chain.Untrusted != 0 {
		t.Fatalf("intact chain = %+v", r.Chain)
	}
}

func writeEvents(t *testing.T, evs []Event) string {
	t.Helper()
	var data []byte
	for _, ev := range evs {
		raw, err := encodeLine(ev)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, raw...)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReportReplacedLogTrustsNothing: a log whose head seq holds another
// hash was rewritten; none of it is trusted.
func TestReportReplacedLogTrustsNothing(t *testing.T) {
	evs := healthy(t).events()
	v, err := InspectFile(writeEvents(t, evs), held(4), &Head{Seq: 3, Hash: strings.Repeat("ab", 32)})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(v.Err(), ErrHeadMismatch) || v.Trusted != 0 {
		t.Fatalf("err %v, trusted %d", v.Err(), v.Trusted)
	}
	r, _ := BuildReport(v, daily(t), Period{Now: mustTime(t, "2026-03-04T12:00:00Z")}, "file")
	if r.Chain.Verdict != VerdictBroken || r.Chain.Untrusted != 14 || !r.Events[0].Untrusted {
		t.Fatalf("chain = %+v", r.Chain)
	}
}

func TestReportUnreconciled(t *testing.T) {
	r := build(t, healthy(t).events(), nil, daily(t), "2026-03-04T12:00:00Z")
	if r.Chain.Verdict != VerdictUnreconciled || !r.Chain.Valid || r.Chain.Reconciled || reportKey(t, r, 1).Held != "unknown" {
		t.Fatalf("chain = %+v", r.Chain)
	}
}

func TestReportPeriod(t *testing.T) {
	evs := healthy(t).events()
	v := InspectEvents(evs, held(4), nil)
	r, err := BuildReport(v, daily(t), Period{
		Since: mustTime(t, "2026-03-03T00:00:00Z"), Until: mustTime(t, "2026-03-03T23:59:59Z"), Now: mustTime(t, "2026-03-10T00:00:00Z"),
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	var versions []int
	for _, k := range r.Keys {
		versions = append(versions, k.Version)
	}
	// Key 1 was destroyed on 03-02; key 4 was created on 03-04.
	if fmt.Sprint(versions) != "[2 3]" {
		t.Fatalf("keys = %v, want [2 3]", versions)
	}
	for _, e := range r.Events {
		if !strings.HasPrefix(e.Time, "2026-03-03") {
			t.Fatalf("event %+v is outside the period", e)
		}
	}
	if r.Chain.Records != 14 {
		t.Fatalf("the verdict covers the whole chain: records %d", r.Chain.Records)
	}
	_, err = BuildReport(v, daily(t), Period{Since: mustTime(t, "2026-03-04T00:00:00Z"), Until: mustTime(t, "2026-03-03T00:00:00Z"), Now: time.Now()}, "test")
	if err == nil || !strings.Contains(err.Error(), "starts") {
		t.Fatalf("since after until: %v", err)
	}
	if _, err := BuildReport(v, daily(t), Period{}, "test"); err == nil {
		t.Fatal("a report without a time of making was built")
	}
}

// TestReportEmptyChain: a chain with no events reports nothing to judge
// without failing.
func TestReportEmptyChain(t *testing.T) {
	r := build(t, nil, held(), daily(t), "2026-03-04T12:00:00Z")
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.Chain.Verdict != VerdictIntact || len(r.Keys) != 0 || len(r.Schedule) != 0 {
		t.Fatalf("report = %s", out)
	}
	for _, list := range []string{"keys", "schedule", "findings", "propagation", "events", "not_checked", "keys_held"} {
		if !strings.Contains(string(out), `"`+list+`":[]`) {
			t.Errorf("%s is not an empty list for a SIEM: %s", list, out)
		}
	}
}
