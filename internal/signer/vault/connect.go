package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/vault/api"
)

// connectTimeout bounds each call of keyd's own client; watchInterval is
// how often the Router checks the addresses.
const (
	connectTimeout = 5 * time.Second
	watchInterval  = 5 * time.Second
)

// Conn is keyd serve's own Vault connection: a client routed over the
// configured addresses and logged in as Login says.
type Conn struct {
	Client  *api.Client
	Router  *Router
	Session *Session
}

// Connect builds keyd's own client over addrs (see NewRoutedClient) and logs
// it in (see NewSession).
func Connect(ctx context.Context, addrs []string, login Login, log *slog.Logger) (*Conn, error) {
	client, router, err := NewRoutedClient(addrs, connectTimeout, log)
	if err != nil {
		return nil, err
	}
	session, err := NewSession(ctx, client, router, login, log)
	if err != nil {
		return nil, err
	}
	log.Info("vault", "addrs", router.Addrs(), "current", router.Current(), "auth", login.Method)
	return &Conn{Client: client, Router: router, Session: session}, nil
}

// Run keeps the token renewed (or logs in again) and moves back to a
// preferred address once it is healthy again, until ctx ends.
func (c *Conn) Run(ctx context.Context) {
	go c.Router.Watch(ctx, watchInterval)
	c.Session.Run(ctx)
}

// OpenAudited returns what `keyd audit verify --vault` and `keyd audit
// report --vault` read with an auditor's token from VAULT_ADDR: the backend
// of the transit key and KV mount named (for the key versions and the
// propagation decisions) and the audit store in kvMount.
func OpenAudited(token, mount, key, kvMount string) (*Backend, *AuditStore, error) {
	client, err := ClientFromEnv(token)
	if err != nil {
		return nil, nil, err
	}
	b, err := New(Config{Client: client, Mount: mount, Key: key, KVMount: kvMount})
	if err != nil {
		return nil, nil, err
	}
	return b, NewAuditStore(client, kvMount), nil
}

// AuditStore returns the audit store in the KV mount keyd serve was given,
// reached with keyd's own client.
func (c *Conn) AuditStore(kvMount string) *AuditStore { return NewAuditStore(c.Client, kvMount) }

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
