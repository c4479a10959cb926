// Package metrics defines keyd's Prometheus metrics on a registry passed in
// by the caller. A nil *Metrics is valid and records nothing.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openedx-keyd/keyd/internal/clock"
)

// Metrics are the counters and gauges keyd exports on /metrics.
type Metrics struct {
	SignRequests  *prometheus.CounterVec   // result, alg
	SignDuration  *prometheus.HistogramVec // alg
	BackendErrors *prometheus.CounterVec   // op
	Rotations     *prometheus.CounterVec   // outcome
	JWKSRequests  *prometheus.CounterVec   // status
	// LifecycleFailures counts failed lifecycle steps (each one backs off).
	LifecycleFailures *prometheus.CounterVec // op
}

// Lifecycle is what the rotation loop reports for the gauges.
type Lifecycle interface {
	// ActiveKeyAge is how long the active key has been signing (0 when none).
	ActiveKeyAge(now time.Time) time.Duration
	// UntilNextTransition is the time until the next scheduled change.
	UntilNextTransition(now time.Time) time.Duration
	// Overdue is true when a due rotation or destruction has not happened.
	Overdue(now time.Time) bool
	// ConfigMismatch is true while this replica's settings disagree with the records.
	ConfigMismatch() bool
	// BackendUp is false while the backend cannot be read.
	BackendUp() bool
	// Backoff is how long the loop waits before retrying a failing step (0 when healthy).
	Backoff() time.Duration
	// EmergencyPending: an emergency rotation is not complete (its keys do
	// not sign meanwhile); stored is false while its intent is held only in memory.
	EmergencyPending() (pending, stored bool)
}

// New registers keyd's counters on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		SignRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyd_sign_requests_total", Help: "Sign requests by result and algorithm.",
		}, []string{"result", "alg"}),
		SignDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyd_sign_duration_seconds", Help: "Latency of successful sign requests.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"alg"}),
		BackendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyd_backend_errors_total", Help: "Failed backend calls by operation.",
		}, []string{"op"}),
		Rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyd_rotations_total", Help: "Key rotations by outcome (created, emergency, failed, already_rotated).",
		}, []string{"outcome"}),
		JWKSRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyd_jwks_requests_total", Help: "JWKS requests by HTTP status (200 or 304).",
		}, []string{"status"}),
		LifecycleFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyd_lifecycle_failures_total", Help: "Failed lifecycle steps by operation; each one backs off.",
		}, []string{"op"}),
	}
	reg.MustRegister(m.SignRequests, m.SignDuration, m.BackendErrors, m.Rotations, m.JWKSRequests, m.LifecycleFailures)
	return m
}

// Propagation is what the rotation loop reports about a pending key that
// waits for its expected clients (see docs/design.md "Observed propagation").
type Propagation interface {
	// UnconfirmedClients is the number of expected clients not yet
	// confirmed for it (0 when no key waits).
	UnconfirmedClients() int
	// UntilActivationDeadline is the time left until it activates whether
	// its clients are confirmed or not (activates_at + activation-max-wait
	// - now); false when no key waits.
	UntilActivationDeadline(now time.Time) (time.Duration, bool)
}

// WatchPropagation registers the propagation gauges, read from p at scrape
// time.
func WatchPropagation(reg prometheus.Registerer, p Propagation, clk clock.Clock) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyd_propagation_unconfirmed_clients",
		Help: "Expected clients not yet confirmed for the pending key (0 when no key waits for its clients).",
	}, func() float64 { return float64(p.UnconfirmedClients()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyd_propagation_deadline_seconds",
		Help: "Seconds until the pending key that waits for its clients activates, confirmed or not (activation-max-wait); 0 when no key waits.",
	}, func() float64 {
		d, ok := p.UntilActivationDeadline(clk.Now())
		if !ok {
			return 0
		}
		return d.Seconds()
	}))
}

// WatchServer registers the gauges of the serving process: ready mirrors
// /readyz; loginProblem says why keyd's own backend login fails ("" when it
// does not; nil for a backend without a login); chainValid is the verdict
// of the last check of the whole audit chain.
func WatchServer(reg prometheus.Registerer, ready func() bool, loginProblem func() string, chainValid func() bool) {
	gauge := func(name, help string, f func() bool) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return bit(f()) }))
	}
	gauge("keyd_ready", "1 while /readyz answers 200 (a JWKS with an active key that cannot be missing a key other replicas sign with).", ready)
	gauge("keyd_backend_login_ok", "1 while keyd's own backend login holds a valid token (always 1 on the local backend).",
		func() bool { return loginProblem == nil || loginProblem() == "" })
	gauge("keyd_audit_chain_valid", "1 unless the last check of the whole audit chain (hashes, links, the log's head, every key accounted for) found it broken.", chainValid)
}

// bit is a gauge value for a boolean.
func bit(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// WatchLifecycle registers the lifecycle gauges, read from lc at scrape time.
func WatchLifecycle(reg prometheus.Registerer, lc Lifecycle, clk clock.Clock) {
	now := clk.Now
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("keyd_active_key_age_seconds", "Seconds since the active key started signing.",
		func() float64 { return lc.ActiveKeyAge(now()).Seconds() })
	gauge("keyd_next_transition_seconds", "Seconds until the next key lifecycle transition.",
		func() float64 { return lc.UntilNextTransition(now()).Seconds() })
	gauge("keyd_rotation_overdue", "1 when a due rotation or key destruction has not happened.",
		func() float64 { return bit(lc.Overdue(now())) })
	gauge("keyd_config_mismatch", "1 while this replica's settings disagree with the key records.",
		func() float64 { return bit(lc.ConfigMismatch()) })
	gauge("keyd_backend_up", "1 while the key backend answers.",
		func() float64 { return bit(lc.BackendUp()) })
	gauge("keyd_lifecycle_backoff_seconds", "Seconds the lifecycle loop waits before retrying a failing step (0 when healthy).",
		func() float64 { return lc.Backoff().Seconds() })
	gauge("keyd_emergency_pending", "1 while an emergency rotation is incomplete (the keys it replaces do not sign).",
		func() float64 { p, _ := lc.EmergencyPending(); return bit(p) })
	gauge("keyd_emergency_intent_unstored", "1 while an emergency's intent is held only in memory (not stored in the backend).",
		func() float64 { p, s := lc.EmergencyPending(); return bit(p && !s) })
}

// SignRequest counts one sign request by result and algorithm.
func (m *Metrics) SignRequest(result, alg string) {
	if m != nil {
		m.SignRequests.WithLabelValues(result, alg).Inc()
	}
}

// Rotation counts one rotation outcome.
func (m *Metrics) Rotation(outcome string) {
	if m != nil {
		m.Rotations.WithLabelValues(outcome).Inc()
	}
}

// LifecycleFailure counts one failed lifecycle step.
func (m *Metrics) LifecycleFailure(op string) {
	if m != nil {
		m.LifecycleFailures.WithLabelValues(op).Inc()
	}
}

// BackendError counts one failed backend call.
func (m *Metrics) BackendError(op string) {
	if m != nil {
		m.BackendErrors.WithLabelValues(op).Inc()
	}
}
