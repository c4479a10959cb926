package report

import (
	"fmt"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/openedx-keyd/keyd/internal/audit"
)

// hostile is the reason a rotation could be given by someone who hopes the
// report renders it as markup.
const hostile = `<img src=x onerror=alert(1)><script>alert(2)</script>`

// chain writes hand-built audit chains, each event at its clock.
type chain struct {
	t   *testing.T
	now time.Time
	evs []audit.Event
}

func newChain(t *testing.T, start time.Time) *chain { return &chain{t: t, now: start} }

func (c *chain) add(typ audit.Type, v int, actor, reason string) *chain {
	c.t.Helper()
	ev := audit.Event{Seq: int64(len(c.evs) + 1), Time: c.now.UTC().Format(audit.TimeFormat), Type: typ, Version: v,
		KID: kid(v), Actor: actor, Reason: reason, PrevHash: audit.ZeroHash}
	if n := len(c.evs); n > 0 {
		ev.PrevHash = c.evs[n-1].Hash
	}
	h, err := audit.Hash(ev)
	if err != nil {
		c.t.Fatal(err)
	}
	ev.Hash = h
	c.evs = append(c.evs, ev)
	return c
}

func (c *chain) after(d time.Duration) *chain { c.now = c.now.Add(d); return c }

// kid is a realistic RFC 7638 thumbprint-like kid for version v.
func kid(v int) string { return fmt.Sprintf("Zk9%04dqT7mXbW2cR8sLpN4vH1yJ6dE3fA0gU5iO", v) }

func policy(t *testing.T, spec string, delay time.Duration) audit.Policy {
	t.Helper()
	s, err := cron.ParseStandard(spec)
	if err != nil {
		t.Fatal(err)
	}
	return audit.Policy{ScheduleSpec: spec, Schedule: s, PropagationDelay: delay, MaxTokenLifetime: time.Hour,
		ClockSkew: time.Minute, ActivationMaxWait: 168 * time.Hour, LateAfter: time.Hour,
		Source: "command-line flags", Defaulted: []string{"max-token-lifetime", "clock-skew", "activation-max-wait"}}
}

var monthStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// twoVersions: the bootstrap key and one monthly rotation, the first key
// retired and still published. The rotation's reason is hostile.
func twoVersions(t *testing.T) (audit.Verification, audit.Policy, audit.Period) {
	c := newChain(t, monthStart).add(audit.Bootstrap, 1, "keyd bootstrap", "first key").add(audit.Activated, 1, "scheduler", "")
	c.now = time.Date(2026, 2, 1, 0, 0, 3, 0, time.UTC)
	c.add(audit.Created, 2, "admin-token", hostile)
	c.after(24*time.Hour+4*time.Second).add(audit.Activated, 2, "scheduler", "").add(audit.Retired, 1, "scheduler", "verify-only until 2026-02-02T01:02:07Z")
	v := audit.InspectEvents(c.evs, []audit.KeyVersion{{Version: 1, KID: kid(1)}, {Version: 2, KID: kid(2)}}, nil)
	return v, policy(t, "0 0 1 * *", 24*time.Hour), audit.Period{Now: time.Date(2026, 2, 2, 0, 30, 0, 0, time.UTC)}
}

// incident: six months of monthly rotations with a gated key, a late
// rotation and an emergency, as a security engineer would review it.
func incident(t *testing.T) (audit.Verification, audit.Policy, audit.Period) {
	c := newChain(t, monthStart).add(audit.Bootstrap, 1, "keyd bootstrap", "first key").add(audit.Activated, 1, "scheduler", "")
	rotate := func(v int, at time.Time, actor string, wait time.Duration) {
		c.now = at
		c.add(audit.Created, v, actor, "")
		if wait > 0 {
			c.after(24*time.Hour+5*time.Second).add(audit.PropagationConfirmed, v, "scheduler", "client ecommerce confirmed by fetch")
			c.after(wait).add(audit.PropagationConfirmed, v, "alice@example.com", "client notes confirmed by admin")
		} else {
			c.after(24*time.Hour + 4*time.Second)
		}
		c.add(audit.Activated, v, "scheduler", "").add(audit.Retired, v-1, "scheduler", "verify-only")
		c.after(62*time.Minute+10*time.Second).add(audit.Destroyed, v-1, "scheduler", "retired")
	}
	rotate(2, time.Date(2026, 2, 1, 0, 0, 2, 0, time.UTC), "scheduler", 0)
	rotate(3, time.Date(2026, 3, 1, 0, 0, 1, 0, time.UTC), "scheduler", 70*time.Hour)
	c.now = time.Date(2026, 4, 1, 0, 0, 1, 0, time.UTC)
	c.add(audit.RotationFailed, 4, "scheduler", "create: vault: 503 Service Unavailable (sealed)")
	rotate(4, time.Date(2026, 4, 3, 9, 12, 0, 0, time.UTC), "scheduler", 0)
	c.now = time.Date(2026, 4, 20, 14, 5, 0, 0, time.UTC)
	c.add(audit.Created, 5, "ops-admin", "by hand before the audit")
	c.now = time.Date(2026, 4, 21, 14, 5, 4, 0, time.UTC)
	c.add(audit.Activated, 5, "scheduler", "").add(audit.Retired, 4, "scheduler", "verify-only")
	c.now = time.Date(2026, 5, 1, 0, 0, 2, 0, time.UTC)
	c.add(audit.Created, 6, "scheduler", "")
	c.now = time.Date(2026, 5, 1, 9, 41, 0, 0, time.UTC)
	c.add(audit.Emergency, 7, "security-oncall", "INC-1234: LMS AppRole secret ID found in a public log "+hostile)
	c.add(audit.Destroyed, 4, "security-oncall", "emergency: INC-1234").add(audit.Destroyed, 5, "security-oncall", "emergency: INC-1234").
		add(audit.Destroyed, 6, "security-oncall", "emergency: INC-1234")
	c.after(3*time.Second).add(audit.Activated, 7, "scheduler", "")
	c.now = time.Date(2026, 6, 1, 0, 0, 1, 0, time.UTC)
	rotate(8, c.now, "scheduler", 0)
	v := audit.InspectEvents(c.evs, []audit.KeyVersion{{Version: 8, KID: kid(8)}}, nil)
	return v, policy(t, "0 0 1 * *", 24*time.Hour), audit.Period{Now: time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)}
}

// manyVersions: 400 versions rotated every 10 minutes (a test schedule).
func manyVersions(t *testing.T) (audit.Verification, audit.Policy, audit.Period) {
	c := newChain(t, monthStart).add(audit.Bootstrap, 1, "keyd bootstrap", "first key").add(audit.Activated, 1, "scheduler", "")
	for v := 2; v <= 400; v++ {
		c.now = monthStart.Add(time.Duration(v-1) * 10 * time.Minute)
		c.add(audit.Created, v, "scheduler", "")
		c.after(2*time.Minute).add(audit.Activated, v, "scheduler", "").add(audit.Retired, v-1, "scheduler", "verify-only")
		if v > 2 {
			c.add(audit.Destroyed, v-2, "scheduler", "retired")
		}
	}
	if v := 230; true {
		c.add(audit.Retired, v, "scheduler", hostile) // a duplicate: shown in the events, not a transition
	}
	v := audit.InspectEvents(c.evs, []audit.KeyVersion{{Version: 399, KID: kid(399)}, {Version: 400, KID: kid(400)}}, nil)
	pol := policy(t, "*/10 * * * *", 2*time.Minute)
	pol.MaxTokenLifetime, pol.ClockSkew, pol.LateAfter = 3*time.Minute, 10*time.Second, time.Minute
	return v, pol, audit.Period{Now: monthStart.Add(400*10*time.Minute + time.Minute)}
}

// tampered: the incident chain with one record edited after the fact.
func tampered(t *testing.T) (audit.Verification, audit.Policy, audit.Period) {
	v, pol, p := incident(t)
	evs := append([]audit.Event(nil), v.Events...)
	evs[21].Actor = "scheduler" // the emergency's actor rewritten, hash left
	return audit.InspectEvents(evs, v.Versions, nil), pol, p
}

type fixture struct {
	name  string
	build func(*testing.T) (audit.Verification, audit.Policy, audit.Period)
}

func buildReport(t *testing.T, f fixture) audit.Report {
	t.Helper()
	v, pol, p := f.build(t)
	r, err := audit.BuildReport(v, pol, p, "file /var/lib/keyd/audit.log")
	if err != nil {
		t.Fatal(err)
	}
	return r
}
