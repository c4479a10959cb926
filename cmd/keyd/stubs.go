package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
)

func vaultWiring(ctx context.Context, cfg *config.Config, log *slog.Logger, clk clock.Clock) (*wiring, error) {
	return nil, errors.New("vault backend: not wired yet")
}
func cmdBootstrap(ctx context.Context, args []string, stdout, stderr io.Writer) int { return 2 }

type vaultFlagSet struct{}

func vaultFlags(fs *flag.FlagSet) *vaultFlagSet                    { return nil }
func verifyVaultChain(ctx context.Context, vf *vaultFlagSet) error { return errNoVault }
