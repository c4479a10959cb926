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
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/datadir"
	"github.com/openedx-keyd/keyd/internal/server"
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

// modeWiring is the wiring of cfg's backend mode.
func modeWiring(ctx context.Context, cfg *config.Config, log *slog.Logger, clk clock.Clock) (*server.Wiring, error) {
	if cfg.Backend == "vault" {
		return server.Vault(ctx, cfg, log, clk)
	}
	return server.Local(cfg, log, clk, server.AuditEvents, os.Getenv)
}

// listen binds cfg.Listen and loads the TLS certificate (nil without one).
func listen(cfg *config.Config) (net.Listener, *tls.Config, error) {
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, nil, fmt.Errorf("load --tls-cert and --tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	return ln, tlsConfig, nil
}

func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	// Bind (and load the TLS certificate) before anything else: a port that
	// another process holds is an error before keyd touches its keys, and
	// "listening" is logged only once the socket is keyd's.
	ln, tlsConfig, err := listen(cfg)
	if err != nil {
		return err
	}
	defer ln.Close()

	clk := clock.Real{}
	w, err := modeWiring(ctx, cfg, log, clk)
	if err != nil {
		return err
	}
	s, err := server.New(cfg, *w, server.Options{Clock: clk, Logger: log, PID: os.Getpid()})
	if err != nil {
		if w.Stop != nil {
			w.Stop()
		}
		return err
	}
	defer s.Close()
	stop := s.Start(ctx)
	defer stop() // the last observations are stored before keyd exits

	srv := &http.Server{
		Addr:              cfg.Listen,
		Handler:           s.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		TLSConfig:         tlsConfig,
	}
	startPprof(log)
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
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

// startPprof serves profiling for benchmarks (bench/run): off unless
// KEYD_PPROF_LISTEN asks for it, on a listener of its own, never on the
// API's.
func startPprof(log *slog.Logger) {
	addr := os.Getenv("KEYD_PPROF_LISTEN")
	if addr == "" {
		return
	}
	go func() {
		log.Warn("pprof listening", "addr", addr)
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		log.Error("pprof stopped", "err", http.ListenAndServe(addr, mux))
	}()
}
