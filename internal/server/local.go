package server

import (
	"context"
	"log/slog"
	"math"
	"path/filepath"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/datadir"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// Local is the wiring of the embedded default mode: keys, tokens and audit
// log in the data dir. events turns the audit log into the lifecycle's
// event sink; getenv reads the role tokens (KEYD_<ROLE>_TOKEN).
func Local(cfg *config.Config, log *slog.Logger, clk clock.Clock, events func(*audit.Log) rotation.Events, getenv func(string) string) (*Wiring, error) {
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
	for _, weak := range config.WeakRoleTokens(getenv) {
		log.Warn("weak role token: " + weak)
	}
	tokens, generated, err := auth.LoadLocalTokens(cfg.DataDir, getenv)
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
	return &Wiring{
		Backend: b, Auth: tokens, Events: events(trail), Audit: &AuditTrail{trail, b, observed, clk}, Problems: problems, Observed: observed,
		Describe: "the local data dir " + path,
		Stop:     func() { dir.Close() },
	}, nil
}
