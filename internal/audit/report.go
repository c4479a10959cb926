package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// The audit report for the security team (docs/design.md "Audit report
// for the security team"): the facts of a period, built from one Verification (the
// same one `keyd audit verify` gives its verdict from) and the lifecycle
// settings. The HTML and the JSON are two renderings of one Report.

// Schedule is the part of a cron schedule the report needs.
type Schedule interface{ Next(time.Time) time.Time }

// Policy is the lifecycle settings the report judges the chain against.
type Policy struct {
	ScheduleSpec      string
	Schedule          Schedule // nil: schedule conformance is not checked
	PropagationDelay  time.Duration
	MaxTokenLifetime  time.Duration
	ClockSkew         time.Duration
	ActivationMaxWait time.Duration
	// LateAfter: a scheduled rotation done more than this after it was
	// due is late (the report's criterion, not a keyd setting).
	LateAfter time.Duration
	// Source says where the settings came from (the server's configuration,
	// or flags); Defaulted names those taken at their defaults.
	Source    string
	Defaulted []string
}

// Period is the window a report covers. A zero Since is the first event's
// time, a zero Until is Now; Now is when the report is made.
type Period struct {
	Since, Until, Now time.Time
}

// Report is the facts of one period: the chain's verdict over the whole
// chain, and the keys, rotations, findings, confirmations and events of the
// period.
type Report struct {
	GeneratedAt time.Time      `json:"generated_at"`
	Source      string         `json:"source"`
	Period      PeriodFacts    `json:"period"`
	Policy      PolicyFacts    `json:"policy"`
	Chain       ChainFacts     `json:"chain"`
	Totals      Totals         `json:"totals"`
	Keys        []KeyFacts     `json:"keys"`
	Schedule    []RotationFact `json:"schedule"`
	Findings    []Finding      `json:"findings"`
	Propagation []ClientFacts  `json:"propagation"`
	Events      []EventFacts   `json:"events"`
}

// PeriodFacts is the resolved period.
type PeriodFacts struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
}

// PolicyFacts is the Policy as reported.
type PolicyFacts struct {
	RotationSchedule  string   `json:"rotation_schedule"`
	PropagationDelay  string   `json:"propagation_delay"`
	MaxTokenLifetime  string   `json:"max_token_lifetime"`
	ClockSkew         string   `json:"clock_skew"`
	ActivationMaxWait string   `json:"activation_max_wait"`
	LateAfter         string   `json:"late_after"`
	Source            string   `json:"source"`
	Defaulted         []string `json:"defaulted"`
}

// The verdicts of the chain.
const (
	VerdictIntact       = "intact"       // everything checked holds, the keys included
	VerdictUnreconciled = "unreconciled" // the links hold, but not reconciled with the keys or a head
	VerdictBroken       = "broken"       // a bad record, a head mismatch or keys the chain does not account for
)

// ChainFacts is the verdict over the whole chain.
type ChainFacts struct {
	Verdict string `json:"verdict"`
	// Valid is Verification.Err() == nil, as GET /v1/audit's chain_valid;
	// Error is that error as `keyd audit verify` prints it.
	Valid    bool   `json:"chain_valid"`
	Error    string `json:"error"`
	Records  int    `json:"records"`
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	// FirstBad is the first bad record; TrustedThroughSeq the seq of the
	// last event before it (0: none), and Untrusted how many events follow.
	FirstBad          *BadRecord `json:"first_bad"`
	TrustedThroughSeq int64      `json:"trusted_through_seq"`
	Untrusted         int        `json:"untrusted_events"`
	HeadChecked       bool       `json:"head_checked"`
	HeadError         string     `json:"head_error"`
	Reconciled        bool       `json:"reconciled"`
	KeysHeld          []KeyHeld  `json:"keys_held"`
	ReconcileError    string     `json:"reconcile_error"`
	HeldWithoutEvent  []int      `json:"held_without_event"`
	GoneWithoutEvent  []int      `json:"gone_without_event"`
	StoreProblems     []string   `json:"store_problems"`
	NotChecked        []string   `json:"not_checked"`
}

// BadRecord is a *ChainError as facts.
type BadRecord struct {
	Seq     int64  `json:"seq"`
	Line    int    `json:"line"`
	Problem string `json:"problem"`
	Detail  string `json:"detail"`
}

// KeyHeld is a key version the backend holds.
type KeyHeld struct {
	Version     int    `json:"version"`
	KID         string `json:"kid"`
	Quarantined bool   `json:"quarantined"`
}

// Totals counts what the period holds.
type Totals struct {
	Keys        int `json:"keys"`
	Rotations   int `json:"rotations"`
	OnTime      int `json:"on_time"`
	Late        int `json:"late"`
	Missed      int `json:"missed"`
	OnDemand    int `json:"on_demand"`
	Emergencies int `json:"emergencies"`
	High        int `json:"findings_high"`
	Medium      int `json:"findings_medium"`
	Low         int `json:"findings_low"`
	Events      int `json:"events"`
}

// EventFacts is one event of the period as stored; Untrusted: it comes at
// or after the chain's first bad record.
type EventFacts struct {
	Seq       int64  `json:"seq"`
	Time      string `json:"time"`
	Type      Type   `json:"type"`
	KID       string `json:"kid"`
	Version   int    `json:"version"`
	Actor     string `json:"actor"`
	Reason    string `json:"reason"`
	Hash      string `json:"hash"`
	Untrusted bool   `json:"untrusted"`
}

// ErrBadPeriod means a report's period ends before it starts (a since after
// until, or after now when until is open).
var ErrBadPeriod = errors.New("audit: bad report period")

// BuildReport makes the report of period from v (the chain as verified,
// with the keys held) judged against pol. source says where the chain was
// read. The verdict is v.Err(): the report and `keyd audit verify` agree.
func BuildReport(v Verification, pol Policy, period Period, source string) (Report, error) {
	now := period.Now.UTC()
	if now.IsZero() {
		return Report{}, errors.New("audit: report without a time of making")
	}
	ctx := newFacts(v, pol)
	since, until := period.Since.UTC(), period.Until.UTC()
	if until.IsZero() {
		until = now
	}
	if since.IsZero() {
		since = ctx.firstTime(until)
	}
	if since.After(until) {
		return Report{}, fmt.Errorf("%w: it starts (%s) after it ends (%s)", ErrBadPeriod, since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	ctx.since, ctx.until, ctx.ref = since, until, minTime(until, now)

	r := Report{
		GeneratedAt: now.Truncate(time.Second),
		Source:      source,
		Period:      PeriodFacts{Since: since, Until: until},
		Policy:      policyFacts(pol),
		Chain:       chainFacts(v),
	}
	ctx.lifecycle()
	r.Schedule = ctx.schedule()
	r.Findings = ctx.findings(r.Schedule)
	r.Keys = ctx.keysInPeriod()
	r.Propagation = ctx.propagation()
	r.Events = ctx.eventsInPeriod()
	r.Totals = totals(r)
	return r, nil
}

// WriteReportJSON writes r as indented JSON: the report for a SIEM.
func WriteReportJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func policyFacts(p Policy) PolicyFacts {
	return PolicyFacts{
		RotationSchedule:  p.ScheduleSpec,
		PropagationDelay:  p.PropagationDelay.String(),
		MaxTokenLifetime:  p.MaxTokenLifetime.String(),
		ClockSkew:         p.ClockSkew.String(),
		ActivationMaxWait: p.ActivationMaxWait.String(),
		LateAfter:         p.LateAfter.String(),
		Source:            p.Source,
		Defaulted:         nonNil(p.Defaulted),
	}
}

// chainFacts is the verdict of v over the whole chain.
func chainFacts(v Verification) ChainFacts {
	c := ChainFacts{
		Verdict: VerdictIntact, Valid: v.Err() == nil,
		Records: v.Records, HeadSeq: v.HeadSeq, HeadHash: v.HeadHash,
		HeadChecked: v.HeadChecked, Reconciled: v.Reconciled,
		KeysHeld: []KeyHeld{}, HeldWithoutEvent: []int{}, GoneWithoutEvent: []int{},
		StoreProblems: nonNil(v.Problems), NotChecked: nonNil(v.NotChecked),
	}
	if err := v.Err(); err != nil {
		c.Verdict, c.Error = VerdictBroken, err.Error()
	} else if !v.Reconciled || v.Incomplete != "" {
		c.Verdict = VerdictUnreconciled
	}
	var ce *ChainError
	if errors.As(v.Chain, &ce) {
		c.FirstBad = &BadRecord{Seq: ce.Seq, Line: ce.Line, Problem: string(ce.Problem), Detail: ce.Detail}
	}
	if v.Trusted > 0 {
		c.TrustedThroughSeq = v.Events[v.Trusted-1].Seq
	}
	c.Untrusted = len(v.Events) - v.Trusted
	if v.Head != nil {
		c.HeadError = v.Head.Error()
	}
	if v.Reconcile != nil {
		c.ReconcileError = v.Reconcile.Error()
	}
	var re *ReconcileError
	if errors.As(v.Reconcile, &re) {
		for _, kv := range re.Missing {
			c.HeldWithoutEvent = append(c.HeldWithoutEvent, kv.Version)
		}
		for _, kv := range re.Vanished {
			c.GoneWithoutEvent = append(c.GoneWithoutEvent, kv.Version)
		}
	}
	for _, kv := range v.Versions {
		c.KeysHeld = append(c.KeysHeld, KeyHeld(kv))
	}
	slices.SortFunc(c.KeysHeld, func(a, b KeyHeld) int { return a.Version - b.Version })
	return c
}

func totals(r Report) Totals {
	t := Totals{Keys: len(r.Keys), Events: len(r.Events)}
	for _, s := range r.Schedule {
		switch s.Status {
		case StatusOnTime:
			t.OnTime++
		case StatusLate:
			t.Late++
		case StatusMissed:
			t.Missed++
		case StatusOnDemand:
			t.OnDemand++
		case StatusEmergency:
			t.Emergencies++
		}
		if s.Done != nil {
			t.Rotations++
		}
	}
	for _, f := range r.Findings {
		switch f.Severity {
		case SeverityHigh:
			t.High++
		case SeverityMedium:
			t.Medium++
		default:
			t.Low++
		}
	}
	return t
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// ptr is a copy of t for a nullable member; nil for the zero time.
func ptr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// parseTime reads an event's time; the zero time when it is malformed (a
// tampered record: shown as stored, left out of the timeline).
func parseTime(s string) time.Time {
	t, err := time.Parse(TimeFormat, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
