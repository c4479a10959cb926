// Package server builds keyd's running server from its configuration and a
// backend mode's wiring, as dex's newServer does: the rotation manager, the
// JWKS handler and the propagation recorder on it, the metrics registry, the
// storage and audit-chain watches, and the HTTP handler of the contract.
// `keyd serve` and the API tests build the server through New, so that what
// the tests serve is what keyd serves.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/claims"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/issue"
	"github.com/openedx-keyd/keyd/internal/jwks"
	"github.com/openedx-keyd/keyd/internal/metrics"
	"github.com/openedx-keyd/keyd/internal/propagation"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// Wiring is what a backend mode provides (Local or Vault).
type Wiring struct {
	Backend signer.Backend
	Auth    auth.Authorizer
	Events  rotation.Events
	// Audit serves GET /v1/audit. An *AuditTrail also serves the report and
	// is re-checked by the chain watch; another kind only pages.
	Audit api.AuditTrail
	// Start runs background work of the mode (token renewal); may be nil.
	Start func(context.Context)
	// Login says why keyd's own backend login fails now ("" when it does
	// not); may be nil.
	Login func() string
	// Problems lists what is wrong with the files the mode keeps (see the
	// storage-problem watch); may be nil.
	Problems func() []string
	// Stop releases what the mode holds (the data dir's lock); may be nil.
	Stop func()
	// Observed is the shared store of observed propagation (Vault: the
	// backend itself; local: the data dir's).
	Observed ObservedStore
	// Describe names the backend in a 503 ("Vault at ADDR").
	Describe string
	// RoleNames names the roles in a 403 (Vault: their policies); may be nil.
	RoleNames map[auth.Role]string
}

// ObservedStore keeps observed propagation for every replica.
type ObservedStore interface {
	rotation.PropagationStore
	propagation.Saver
}

// Options are what is not configuration: the clock, the logger, the process.
type Options struct {
	Clock  clock.Clock  // default clock.Real
	Logger *slog.Logger // default slog.Default
	// Registry takes keyd's metrics; nil: a new one with the Go and
	// process collectors.
	Registry *prometheus.Registry
	PID      int // reported by /readyz; 0: absent
}

// Server is keyd, built and not yet running.
type Server struct {
	Handler  *api.Handler
	Manager  *rotation.Manager
	Recorder *propagation.Recorder
	JWKS     *jwks.Handler
	Registry *prometheus.Registry
	Metrics  *metrics.Metrics

	cfg      *config.Config
	w        Wiring
	clk      clock.Clock
	log      *slog.Logger
	problems *problemWatch
	chain    *chainWatch
}

// chainCheckEvery is how often serve re-checks the whole audit chain: every
// replica reads it and re-hashes it, a few hundred events a year. A Vault
// replica lists the entries and reads only those it has not cached, so a
// removed entry shows at the next check, one rewritten in place (beyond
// keyd-server's create-only policy) at the next start.
const chainCheckEvery = time.Minute

// New builds the server of cfg over w. Nothing runs until Start.
func New(cfg *config.Config, w Wiring, opt Options) (*Server, error) {
	s := &Server{cfg: cfg, w: w, clk: opt.Clock, log: opt.Logger, Registry: opt.Registry}
	if s.clk == nil {
		s.clk = clock.Real{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.Registry == nil {
		s.Registry = prometheus.NewRegistry()
		s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s.Metrics = metrics.New(s.Registry)
	s.JWKS = s.jwksHandler()
	mgr, err := rotation.New(s.rotationConfig())
	if err != nil {
		return nil, err
	}
	s.Manager = mgr
	metrics.WatchLifecycle(s.Registry, mgr, s.clk)
	metrics.WatchPropagation(s.Registry, mgr, s.clk)
	s.problems = newProblemWatch(w.Problems, s.log, s.Registry)
	s.chain = &chainWatch{log: s.log}
	if at, ok := w.Audit.(*AuditTrail); ok {
		s.chain.valid = at.Valid
	}
	s.Handler = api.New(s.apiConfig(opt.PID))
	metrics.WatchServer(s.Registry, s.Handler.Ready, w.Login, s.chain.Valid)
	return s, nil
}

// jwksHandler is the JWKS route, counted, with the recorder of the
// expected clients' fetches on it.
func (s *Server) jwksHandler() *jwks.Handler {
	h := jwks.NewHandler(s.cfg.JWKSMaxAge)
	ok, notModified := s.Metrics.JWKSRequests.WithLabelValues("200"), s.Metrics.JWKSRequests.WithLabelValues("304")
	h.Observe = func(status int) {
		if status == http.StatusNotModified {
			notModified.Inc()
		} else {
			ok.Inc()
		}
	}
	s.Recorder = propagation.NewRecorder(s.clk)
	// Only the expected clients' fetches are stored (no other is read):
	// without --expected-clients keyd writes nothing.
	expected := s.cfg.ExpectedClients
	s.Recorder.Stored = func(client string) bool { return slices.Contains(expected, client) }
	h.Fetched = s.Recorder.Fetched
	return h
}

func (s *Server) rotationConfig() rotation.Config {
	cfg := s.cfg
	return rotation.Config{
		Backend: s.w.Backend,
		Rules: rotation.Rules{
			Schedule:          cfg.Schedule,
			ScheduleSpec:      cfg.RotationSchedule,
			PropagationDelay:  cfg.PropagationDelay,
			RetireAfter:       cfg.RetireAfter(),
			ExpectedClients:   cfg.ExpectedClients,
			InstanceWindow:    cfg.InstanceWindow,
			ActivationMaxWait: cfg.ActivationMaxWait,
		},
		Propagation: s.w.Observed,
		Algorithm:   cfg.Algorithm,
		Clock:       s.clk,
		Events:      s.w.Events,
		Logger:      s.log,
		Metrics:     s.Metrics,
		Refresh:     cfg.Refresh(),
		// The snapshot may miss a key others sign with once it is older
		// than this (docs/design.md "Vault HA"): /readyz then answers 503.
		StaleAfter: cfg.PropagationDelay - cfg.JWKSMaxAge,
		OnChange:   api.PublishKeys(s.JWKS, s.log),
	}
}

func (s *Server) apiConfig(pid int) api.Config {
	cfg := s.cfg
	return api.Config{
		Auth:      s.w.Auth,
		Backend:   s.w.Backend,
		Lifecycle: s.Manager,
		Issuer: issue.New(issue.Config{
			Backend: s.w.Backend, Lifecycle: s.Manager, Clock: s.clk, Metrics: s.Metrics, Logger: s.log,
			Policy: claims.Policy{Issuers: cfg.Issuers, MaxLifetime: cfg.MaxTokenLifetime, ClockSkew: cfg.ClockSkew},
		}),
		JWKS:        s.JWKS,
		Audit:       withReport(s.w.Audit, cfg, s.clk),
		Propagation: s.Manager,
		Problems:    s.problems.Current,
		Login:       s.w.Login,
		Metrics:     s.Metrics,
		Gatherer:    s.Registry,
		Logger:      s.log,
		SignTimeout: cfg.SignTimeout,

		BackendDescription: s.w.Describe,
		RoleNames:          s.w.RoleNames,
		PID:                pid,
	}
}

// Start makes the first lifecycle tick (a failure is retried in the
// background) and runs the background work until ctx ends: the lifecycle
// loop, the mode's own, the propagation recorder's flushes, the storage and
// chain watches. stop ends them and returns once the last observations are
// stored.
func (s *Server) Start(ctx context.Context) (stop func()) {
	if err := s.Manager.Tick(ctx); err != nil {
		s.log.Warn("first lifecycle tick failed; retrying in the background", "err", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	go s.Manager.Run(runCtx)
	if s.w.Start != nil {
		go s.w.Start(runCtx)
	}
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		s.Recorder.Run(runCtx, s.w.Observed, flushEvery(s.cfg.JWKSMaxAge), s.cfg.JWKSMaxAge, forgetAfter(s.cfg.InstanceWindow), s.log, s.Manager.Kick)
	}()
	s.problems.check()
	go s.problems.run(runCtx, s.cfg.Refresh())
	s.chain.check(ctx)
	go s.chain.run(runCtx, s.clk, chainCheckEvery)
	return func() { cancel(); <-flushed }
}

// Close releases what the mode holds (the data dir's lock).
func (s *Server) Close() {
	if s.w.Stop != nil {
		s.w.Stop()
	}
}

// flushEvery is how often the JWKS fetch observations are written (only
// what grew or aged past jwks-max-age is): at most every second, and
// twice per jwks-max-age.
func flushEvery(maxAge time.Duration) time.Duration {
	return max(min(time.Second, maxAge/2), 50*time.Millisecond)
}

// forgetAfter is how long an instance that stopped fetching is kept in the
// store (shown by GET /v1/propagation, no longer counted): a day, or twice
// the instance window when that is longer.
func forgetAfter(window time.Duration) time.Duration { return max(24*time.Hour, 2*window) }
