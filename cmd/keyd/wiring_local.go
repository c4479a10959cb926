package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/rotation"
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
	return &wiring{backend: b, auth: auth, events: logEvents{log}}, nil
}

// logEvents writes lifecycle events to the log only.
type logEvents struct{ log *slog.Logger }

func (l logEvents) Emit(_ context.Context, e rotation.Event) error {
	l.log.Info("key event", "type", e.Type, "version", e.Version, "kid", e.KID, "actor", e.Actor, "reason", e.Reason)
	return nil
}
