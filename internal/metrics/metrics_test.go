package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openedx-keyd/keyd/internal/clock"
)

type propagation struct {
	unconfirmed int
	deadline    time.Time // zero: no key waits
}

func (p *propagation) UnconfirmedClients() int { return p.unconfirmed }
func (p *propagation) UntilActivationDeadline(now time.Time) (time.Duration, bool) {
	if p.deadline.IsZero() {
		return 0, false
	}
	return p.deadline.Sub(now), true
}

// gauges reads every gauge of reg as name=value, sorted by name.
func gauges(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		out = append(out, fmt.Sprintf("%s=%g", mf.GetName(), mf.GetMetric()[0].GetGauge().GetValue()))
	}
	return strings.Join(out, " ")
}

func TestWatchPropagation(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	p := &propagation{}
	WatchPropagation(reg, p, clock.NewFake(now))
	if got, want := gauges(t, reg), "keyd_propagation_deadline_seconds=0 keyd_propagation_unconfirmed_clients=0"; got != want {
		t.Errorf("no key waiting: %s, want %s", got, want)
	}
	p.unconfirmed, p.deadline = 2, now.Add(90*time.Minute)
	if got, want := gauges(t, reg), "keyd_propagation_deadline_seconds=5400 keyd_propagation_unconfirmed_clients=2"; got != want {
		t.Errorf("a key waiting for 2 clients: %s, want %s", got, want)
	}
	p.deadline = now.Add(-time.Minute) // past it: activates at the next tick
	if got, want := gauges(t, reg), "keyd_propagation_deadline_seconds=-60 keyd_propagation_unconfirmed_clients=2"; got != want {
		t.Errorf("past the deadline: %s, want %s", got, want)
	}
}

func TestWatchServer(t *testing.T) {
	server := func(ready bool, login func() string, chain bool) string {
		reg := prometheus.NewRegistry()
		WatchServer(reg, func() bool { return ready }, login, func() bool { return chain })
		return gauges(t, reg)
	}
	for _, tc := range []struct {
		name  string
		ready bool
		login func() string
		chain bool
		want  string
	}{
		{"healthy local", true, nil, true, "keyd_audit_chain_valid=1 keyd_backend_login_ok=1 keyd_ready=1"},
		{"healthy vault", true, func() string { return "" }, true, "keyd_audit_chain_valid=1 keyd_backend_login_ok=1 keyd_ready=1"},
		{"login failing", true, func() string { return "approle login: permission denied" }, true, "keyd_audit_chain_valid=1 keyd_backend_login_ok=0 keyd_ready=1"},
		{"not ready, chain broken", false, nil, false, "keyd_audit_chain_valid=0 keyd_backend_login_ok=1 keyd_ready=0"},
	} {
		if got := server(tc.ready, tc.login, tc.chain); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
