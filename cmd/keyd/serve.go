package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/claims"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/datadir"
	"github.com/openedx-keyd/keyd/internal/issue"
	"github.com/openedx-keyd/keyd/internal/jwks"
	"github.com/openedx-keyd/keyd/internal/metrics"
	"github.com/openedx-keyd/keyd/internal/propagation"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/vault"
)

func cmdServe(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	raw := config.Flags(fs)
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		fmt.Fprintln(stderr, "keyd serve:", err)
		return 2
	}
	if os.Getenv("GOGC") == "" {
		// keyd's live heap is a few MB while the JWKS and sign paths
		// allocate per request (mostly net/http's own buffers): a higher GC
		// target trades a few MB of RSS for far fewer collections (make
		// bench row 5 keeps the peak RSS in check). GOGC overrides it.
		debug.SetGCPercent(400)
	}
	log := newLogger(stderr)
	if err := serve(ctx, cfg, log); err != nil {
		var dirErr *datadir.Error
		if errors.As(err, &dirErr) { // the operator's fix, on one line
			fmt.Fprintln(stderr, "keyd serve:", dirErr)
			return 1
		}
		err = vault.Explain(err)
		log.Error("keyd stopped", "err", err)
		fmt.Fprintln(stderr, "keyd serve:", err)
		return 1
	}
	return 0
}

// wiring is what a backend mode provides to serve.
type wiring struct {
	backend signer.Backend
	auth    api.Authorizer
	events  rotation.Events
	audit   auditTrail
	// start runs background work of the mode (token renewal); may be nil.
	start func(context.Context)
	// login says why keyd's own backend login fails now ("" when it does
	// not); may be nil.
	login func() string
	// problems lists what is wrong with the files the mode keeps (see
	// problemWatch); may be nil.
	problems func() []string
	// stop releases what the mode holds (the data dir's lock); may be nil.
	stop func()
	// observed is the shared store of observed propagation (Vault: the
	// backend itself; local: the data dir's).
	observed observedStore
	// describe names the backend in a 503 ("Vault at ADDR").
	describe string
	// roleNames names the roles in a 403 (Vault: their policies); may be nil.
	roleNames map[auth.Role]string
}

// observedStore keeps observed propagation for every replica.
type observedStore interface {
	rotation.PropagationStore
	propagation.Saver
}

func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	// Bind (and load the TLS certificate) before anything else: a port that
	// another process holds is an error before keyd touches its keys, and
	// "listening" is logged only once the socket is keyd's.
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("load --tls-cert and --tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	defer ln.Close()

	clk := clock.Real{}
	var w *wiring
	switch cfg.Backend {
	case "local":
		w, err = localWiring(cfg, log, clk)
	case "vault":
		w, err = vaultWiring(ctx, cfg, log, clk)
	}
	if err != nil {
		return err
	}
	if w.stop != nil {
		defer w.stop()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handler := jwks.NewHandler(cfg.JWKSMaxAge)

	m := metrics.New(reg)
	ok, notModified := m.JWKSRequests.WithLabelValues("200"), m.JWKSRequests.WithLabelValues("304")
	handler.Observe = func(status int) {
		if status == http.StatusNotModified {
			notModified.Inc()
		} else {
			ok.Inc()
		}
	}
	observed := w.observed
	recorder := propagation.NewRecorder(clk)
	// Only the expected clients' fetches are stored (no other is read):
	// without --expected-clients keyd writes nothing, today's behaviour.
	recorder.Stored = func(client string) bool { return slices.Contains(cfg.ExpectedClients, client) }
	handler.Fetched = recorder.Fetched
	mgr, err := rotation.New(rotation.Config{
		Backend: w.backend,
		Rules: rotation.Rules{
			Schedule:          cfg.Schedule,
			ScheduleSpec:      cfg.RotationSchedule,
			PropagationDelay:  cfg.PropagationDelay,
			RetireAfter:       cfg.RetireAfter(),
			ExpectedClients:   cfg.ExpectedClients,
			InstanceWindow:    cfg.InstanceWindow,
			ActivationMaxWait: cfg.ActivationMaxWait,
		},
		Propagation: observed,
		Algorithm:   cfg.Algorithm,
		Clock:       clk,
		Events:      w.events,
		Logger:      log,
		Metrics:     m,
		Refresh:     cfg.Refresh(),
		// The snapshot may miss a key others sign with once it is older
		// than this (DESIGN.md "Vault HA"): /readyz then answers 503.
		StaleAfter: cfg.PropagationDelay - cfg.JWKSMaxAge,
		OnChange:   api.PublishKeys(handler, log),
	})
	if err != nil {
		return err
	}
	metrics.WatchLifecycle(reg, mgr, clk)
	metrics.WatchPropagation(reg, mgr, clk)
	if err := mgr.Tick(ctx); err != nil {
		log.Warn("first lifecycle tick failed; retrying in the background", "err", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go mgr.Run(runCtx)
	if w.start != nil {
		go w.start(runCtx)
	}
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		recorder.Run(runCtx, observed, flushEvery(cfg.JWKSMaxAge), cfg.JWKSMaxAge, forgetAfter(cfg.InstanceWindow), log, mgr.Kick)
	}()
	defer func() { cancel(); <-flushed }() // the last observations are stored before keyd exits
	problems := newProblemWatch(w.problems, log, reg)
	problems.check()
	go problems.run(runCtx, cfg.Refresh())
	chain := &chainWatch{valid: w.audit.Valid, log: log}
	chain.check(ctx)
	go chain.run(runCtx, clk, chainCheckEvery)

	e := api.New(api.Config{
		Auth:      w.auth,
		Backend:   w.backend,
		Lifecycle: mgr,
		Issuer: issue.New(issue.Config{
			Backend: w.backend, Lifecycle: mgr, Clock: clk, Metrics: m, Logger: log,
			Policy: claims.Policy{Issuers: cfg.Issuers, MaxLifetime: cfg.MaxTokenLifetime, ClockSkew: cfg.ClockSkew},
		}),
		JWKS:        handler,
		Audit:       withReport(w.audit, cfg, clk),
		Propagation: mgr,
		Problems:    problems.Current,
		Login:       w.login,
		Metrics:     m,
		Gatherer:    reg,
		Logger:      log,
		SignTimeout: cfg.SignTimeout,

		BackendDescription: w.describe,
		RoleNames:          w.roleNames,
		PID:                os.Getpid(),
	})
	metrics.WatchServer(reg, e.Ready, w.login, chain.Valid)
	srv := &http.Server{
		Addr:              cfg.Listen,
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
	}
	if addr := os.Getenv("KEYD_PPROF_LISTEN"); addr != "" {
		// Profiling for benchmarks (bench/run): off unless asked for, on a
		// listener of its own, never on the API's.
		go func() {
			log.Warn("pprof listening", "addr", addr)
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			log.Error("pprof stopped", "err", http.ListenAndServe(addr, mux))
		}()
	}
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			srv.TLSConfig = tlsConfig
			errc <- srv.ServeTLS(ln, "", "") // the certificate is in TLSConfig
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("keyd listening", "addr", ln.Addr().String(), "backend", cfg.Backend, "tls", cfg.TLSCert != "", "algorithm", cfg.Algorithm,
		"rotation_schedule", cfg.RotationSchedule, "propagation_delay", cfg.PropagationDelay, "max_token_lifetime", cfg.MaxTokenLifetime,
		"clock_skew", cfg.ClockSkew, "jwks_max_age", cfg.JWKSMaxAge, "expected_clients", cfg.ExpectedClients)
	select {
	case err := <-errc:
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	case <-ctx.Done():
	}
	shutdown, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("keyd stopped")
	return nil
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
