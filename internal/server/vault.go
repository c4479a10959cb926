package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/signer/vault"
	"github.com/openedx-keyd/keyd/policies"
)

// Vault is the wiring of production mode: keys in Vault transit, records
// and the audit chain in KV v2, roles decided by Vault. keyd logs in over
// --vault-addrs (or VAULT_ADDR) as --vault-auth says.
func Vault(ctx context.Context, cfg *config.Config, log *slog.Logger, clk clock.Clock) (*Wiring, error) {
	addrs, login, err := connectVault(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	b, err := vault.New(vault.Config{
		Client: login.Client, Mount: cfg.VaultMount, Key: cfg.VaultKey, KVMount: cfg.VaultKVMount,
		Algorithm: cfg.Algorithm, Clock: clk, Logger: log, SignTimeout: cfg.SignTimeout,
	})
	if err != nil {
		return nil, err
	}
	if err := b.CheckCannotSign(ctx); err != nil {
		return nil, err
	}
	if err := b.CheckKeyType(ctx); err != nil {
		return nil, err
	}
	trail := audit.NewLog(login.AuditStore(cfg.VaultKVMount), clk)
	return &Wiring{
		Backend:  b,
		Auth:     vault.Roles{B: b},
		Events:   AuditEvents(trail),
		Audit:    &AuditTrail{Log: trail, Backend: b, Decisions: b, Clock: clk},
		Start:    login.Run,
		Login:    login.Session.Problem,
		Problems: b.Problems,
		Observed: b,
		Describe: "Vault at " + strings.Join(addrs, ", "),
		RoleNames: map[auth.Role]string{
			auth.RoleSigner:  "signer (a Vault token of policy " + policies.LMSSigner + ")",
			auth.RoleAdmin:   "admin (a Vault token of policy " + policies.Admin + ")",
			auth.RoleAuditor: "auditor (a Vault token of policy " + policies.Auditor + ")",
		},
	}, nil
}

// connectVault builds keyd's own client over the configured addresses (as
// configured, in order) and logs keyd in.
func connectVault(ctx context.Context, cfg *config.Config, log *slog.Logger) ([]string, *vault.Conn, error) {
	addrs := cfg.VaultAddrs
	if len(addrs) == 0 {
		if a := os.Getenv("VAULT_ADDR"); a != "" {
			addrs = []string{a}
		}
	}
	if len(addrs) == 0 {
		return nil, nil, errors.New("no Vault address: set --vault-addrs (KEYD_VAULT_ADDRS) or VAULT_ADDR")
	}
	if cfg.VaultAuth == "approle" {
		warnReadableSecretID(cfg.VaultSecretIDFile, log)
	}
	conn, err := vault.Connect(ctx, addrs, vault.Login{
		Method: cfg.VaultAuth, Token: os.Getenv("VAULT_TOKEN"),
		RoleID: cfg.VaultRoleID, SecretIDFile: cfg.VaultSecretIDFile,
	}, log)
	if err != nil {
		return nil, nil, err
	}
	return addrs, conn, nil
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
