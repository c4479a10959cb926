package main

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/datadir"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// localWiring is the embedded default: keys, tokens and audit log in the data dir.
func localWiring(cfg *config.Config, log *slog.Logger, clk clock.Clock) (*wiring, error) {
	// A volume keyd cannot write, or a second keyd on the same directory,
	// is one clear line at start (datadir.Error), before any key is read.
	dir, err := datadir.Open(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			dir.Close()
		}
	}()
	b, err := local.New(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	for _, weak := range config.WeakRoleTokens(os.Getenv) {
		log.Warn("weak role token: " + weak)
	}
	auth, generated, err := api.LoadLocalAuth(cfg.DataDir, os.Getenv)
	if err != nil {
		return nil, err
	}
	for role, path := range generated {
		log.Info("generated a role token", "role", role, "file", path)
	}
	// The head of the chain is kept beside the keys, so a deleted or
	// replaced audit.log is reported instead of silently restarted.
	store, err := audit.OpenFileWithHead(filepath.Join(cfg.DataDir, "audit.log"), filepath.Join(cfg.DataDir, "keys", "audit-head.json"), clk)
	if err != nil {
		return nil, err
	}
	trail := audit.NewLog(store, clk)
	problems := func() []string {
		_, _ = store.Read(context.Background(), math.MaxInt64) // re-reads the log and the head
		return append(b.Problems(), store.Problems()...)
	}
	observed, err := local.NewPropagationStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	ok = true
	path := cfg.DataDir
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return &wiring{
		backend: b, auth: auth, events: auditEvents{trail}, audit: auditTrail{trail, b, observed, clk}, problems: problems, observed: observed,
		describe: "the local data dir " + path,
		stop:     func() { dir.Close() },
	}, nil
}
