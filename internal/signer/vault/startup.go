package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/vault/api"
)

// ClientFromEnv returns a client for VAULT_ADDR with token: keyd's own, or an
// operator's or auditor's for the CLI tools.
func ClientFromEnv(token string) (*api.Client, error) {
	if os.Getenv("VAULT_ADDR") == "" {
		return nil, errors.New("VAULT_ADDR is not set")
	}
	if token == "" {
		return nil, errors.New("no Vault token: set VAULT_TOKEN")
	}
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault config: %w", cfg.Error)
	}
	cfg.Timeout = 5 * time.Second
	cfg.MaxRetries = 1
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetToken(token)
	return c, nil
}

// CheckKeyType refuses a configured algorithm the transit key cannot sign
// with: in Vault every version of a key has the key's type, set by keyd
// bootstrap. A Backend without a configured algorithm passes.
func (b *Backend) CheckKeyType(ctx context.Context) error {
	if b.alg == "" {
		return nil
	}
	want, err := KeyType(b.alg)
	if err != nil {
		return err
	}
	ki, err := b.readKey(ctx)
	if err != nil {
		return err
	}
	if ki.Type != want {
		return fmt.Errorf("--algorithm %s needs a %s key but %s is %s: set --algorithm to fit the key, or bootstrap a new --vault-key", b.alg, want, b.keyPath(), ki.Type)
	}
	return nil
}
