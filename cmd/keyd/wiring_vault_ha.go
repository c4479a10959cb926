package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/signer/vault"
)

// vaultLogin is keyd's own Vault connection for serve: routed over
// --vault-addrs (or VAULT_ADDR) and logged in as --vault-auth says.
type vaultLogin struct {
	addrs []string // as configured, in order
	*vault.Conn
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
	if cfg.VaultAuth == "approle" {
		warnReadableSecretID(cfg.VaultSecretIDFile, log)
	}
	conn, err := vault.Connect(ctx, addrs, vault.Login{
		Method: cfg.VaultAuth, Token: os.Getenv("VAULT_TOKEN"),
		RoleID: cfg.VaultRoleID, SecretIDFile: cfg.VaultSecretIDFile,
	}, log)
	if err != nil {
		return nil, err
	}
	return &vaultLogin{addrs: addrs, Conn: conn}, nil
}

// warnReadableSecretID logs one warning when the AppRole secret-ID file can
// be read by its group or others: the secret ID logs in as keyd.
func warnReadableSecretID(path string, log *slog.Logger) {
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm()&0o077 == 0 {
		return // a missing file is the login's error
	}
	log.Warn("the AppRole secret-ID file can be read by its group or others; only keyd's user should read it",
		"file", path, "mode", fmt.Sprintf("%04o", info.Mode().Perm()), "fix", "chmod 600 "+path)
}
