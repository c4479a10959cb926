package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/signer/vault"
)

// vaultLogin is keyd's own Vault client for serve: routed over
// --vault-addrs (or VAULT_ADDR) and logged in as --vault-auth says.
type vaultLogin struct {
	addrs   []string // as configured, in order
	client  *vaultapi.Client
	router  *vault.Router
	session *vault.Session
}

// loginVault builds the client and logs keyd in.
func loginVault(ctx context.Context, cfg *config.Config, log *slog.Logger) (*vaultLogin, error) {
	addrs := cfg.VaultAddrs
	if len(addrs) == 0 {
		if a := os.Getenv("VAULT_ADDR"); a != "" {
			addrs = []string{a}
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no Vault address: set --vault-addrs (KEYD_VAULT_ADDRS) or VAULT_ADDR")
	}
	client, router, err := vault.NewRoutedClient(addrs, 5*time.Second, log)
	if err != nil {
		return nil, err
	}
	session, err := vault.NewSession(ctx, client, router, vault.Login{
		Method: cfg.VaultAuth, Token: os.Getenv("VAULT_TOKEN"),
		RoleID: cfg.VaultRoleID, SecretIDFile: cfg.VaultSecretIDFile,
	}, log)
	if err != nil {
		return nil, err
	}
	log.Info("vault", "addrs", router.Addrs(), "current", router.Current(), "auth", cfg.VaultAuth)
	return &vaultLogin{addrs: addrs, client: client, router: router, session: session}, nil
}

// run keeps the token renewed (or logs in again) and moves back to a
// preferred address once it is healthy again, until ctx ends.
func (l *vaultLogin) run(ctx context.Context) {
	go l.router.Watch(ctx, 5*time.Second)
	l.session.Run(ctx)
}
