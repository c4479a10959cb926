package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// localWiring is the embedded default: keys, tokens and audit log in the data dir.
func localWiring(cfg *config.Config, log *slog.Logger, clk clock.Clock) (*wiring, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	b, err := local.New(cfg.DataDir)
	if err != nil {
		return nil, err
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
	return &wiring{backend: b, auth: auth, events: auditEvents{trail}, audit: auditTrail{trail, b, observed, clk}, problems: problems, observed: observed}, nil
}
