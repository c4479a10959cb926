package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
)

// Login says how keyd obtains its own Vault token.
type Login struct {
	// Method is "token" (a given token, renewed while it can be) or
	// "approle" (RoleID and the secret ID read from SecretIDFile at each
	// login).
	Method       string
	Token        string
	RoleID       string
	SecretIDFile string
	// Mount is the AppRole auth mount (default "approle").
	Mount string
}

// Session keeps keyd's own client logged in: it renews the token with the
// Vault client library's lifetime watcher, logs in again (AppRole) when the
// token can no longer be renewed or Vault no longer knows it, and reports a
// failed login while it lasts. It only ever sets the token of keyd's own
// client, never that of a client carrying a caller's token.
type Session struct {
	client *api.Client
	login  Login
	log    *slog.Logger

	check chan struct{} // a 403 answered to keyd's own token: is it still valid?

	mu      sync.Mutex
	token   string
	secret  *api.Secret // the login or lookup answer the watcher renews
	problem string      // why keyd has no valid token now, "" when it has
}

// NewSession logs keyd's client in (AppRole) or checks its token (token
// mode) once. router, when not nil, tells the session about 403 answers, so
// that a revoked token leads to a new login without waiting for a renewal.
func NewSession(ctx context.Context, client *api.Client, router *Router, login Login, log *slog.Logger) (*Session, error) {
	if log == nil {
		log = slog.Default()
	}
	if login.Mount == "" {
		login.Mount = "approle"
	}
	s := &Session{client: client, login: login, log: log, check: make(chan struct{}, 1)}
	switch login.Method {
	case "", "token":
		if login.Token == "" {
			return nil, errors.New("no Vault token: set VAULT_TOKEN")
		}
		s.setToken(login.Token)
		self, err := client.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, wrap("look up keyd's own token", err)
		}
		s.secret = tokenSecret(login.Token, self)
	case "approle":
		if login.RoleID == "" || login.SecretIDFile == "" {
			return nil, errors.New("vault approle login needs KEYD_VAULT_ROLE_ID and KEYD_VAULT_SECRET_ID_FILE")
		}
		if err := s.loginAppRole(ctx); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("vault: unknown login method %q (want token or approle)", login.Method)
	}
	if router != nil {
		router.onDenied = s.denied
	}
	return s, nil
}

// tokenSecret turns a lookup-self answer into the secret a lifetime watcher
// renews.
func tokenSecret(token string, self *api.Secret) *api.Secret {
	ttl, _ := self.TokenTTL()
	renewable, _ := self.TokenIsRenewable()
	return &api.Secret{Auth: &api.SecretAuth{ClientToken: token, Renewable: renewable, LeaseDuration: int(ttl.Seconds())}}
}

func (s *Session) setToken(tok string) {
	s.mu.Lock()
	s.token = tok
	s.mu.Unlock()
	s.client.SetToken(tok)
}

// Problem says why keyd holds no valid Vault token now ("" when it does).
func (s *Session) Problem() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.problem
}

func (s *Session) setProblem(p string) {
	s.mu.Lock()
	changed := s.problem != p
	s.problem = p
	s.mu.Unlock()
	if changed && p != "" {
		s.log.Error("vault login", "problem", p)
	}
}

// denied is the Router's hook: Vault answered 403 to a request.
func (s *Session) denied(token string) {
	s.mu.Lock()
	mine := token != "" && token == s.token
	s.mu.Unlock()
	if mine {
		select {
		case s.check <- struct{}{}:
		default:
		}
	}
}

// loginAppRole logs in with the role ID and the secret ID in its file.
func (s *Session) loginAppRole(ctx context.Context) error {
	raw, err := os.ReadFile(s.login.SecretIDFile)
	if err != nil {
		return fmt.Errorf("vault approle login: read the secret ID: %w", err)
	}
	anon, err := s.client.Clone()
	if err != nil {
		return fmt.Errorf("vault approle login: %w", err)
	}
	anon.ClearToken() // a stale token must not ride along
	sec, err := anon.Logical().WriteWithContext(ctx, loginPath(s.login.Mount), map[string]any{
		"role_id":   s.login.RoleID,
		"secret_id": strings.TrimSpace(string(raw)),
	})
	if err != nil {
		return wrap("approle login", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return errors.New("vault: approle login: no token in the answer")
	}
	s.setToken(sec.Auth.ClientToken)
	s.mu.Lock()
	s.secret = sec
	s.mu.Unlock()
	s.log.Info("vault approle login", "ttl", time.Duration(sec.Auth.LeaseDuration)*time.Second, "renewable", sec.Auth.Renewable)
	return nil
}

// Run renews keyd's token until ctx ends, logging in again when it can no
// longer be renewed (AppRole) or Vault says it is gone.
func (s *Session) Run(ctx context.Context) {
	for ctx.Err() == nil {
		s.mu.Lock()
		sec := s.secret
		s.mu.Unlock()
		var done <-chan error
		var w *api.LifetimeWatcher
		if sec.Auth.LeaseDuration > 0 {
			var err error
			w, err = s.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: sec})
			if err != nil {
				s.log.Error("vault token watcher", "err", err)
				return
			}
			go w.Start()
			done = w.DoneCh()
		} else {
			s.log.Info("vault token never expires: no renewal")
		}
		relogin := s.watch(ctx, w, done)
		if w != nil {
			w.Stop()
		}
		if !relogin || ctx.Err() != nil {
			return
		}
		s.relogin(ctx)
	}
}

// watch waits until the token must be replaced (true) or ctx ends.
func (s *Session) watch(ctx context.Context, w *api.LifetimeWatcher, done <-chan error) bool {
	var renewed <-chan *api.RenewOutput
	if w != nil {
		renewed = w.RenewCh()
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case err := <-done:
			if s.login.Method != "approle" {
				s.setProblem("keyd's Vault token can no longer be renewed and will expire; give keyd a new VAULT_TOKEN or use --vault-auth approle")
				s.log.Error("vault token renewal ended", "err", Explain(err))
				return false
			}
			s.log.Info("vault token can no longer be renewed; logging in again", "err", Explain(err))
			return true
		case r := <-renewed:
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				s.log.Debug("vault token renewed", "ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second)
			}
		case <-s.check:
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := s.client.Auth().Token().LookupSelfWithContext(lctx)
			cancel()
			if statusOf(err) != 403 {
				continue // still valid (the 403 was about a path), or Vault is down
			}
			if s.login.Method != "approle" {
				s.setProblem("Vault no longer knows keyd's own token (revoked or expired); give keyd a new VAULT_TOKEN")
				continue
			}
			s.setProblem("Vault no longer knows keyd's own token (revoked or expired); logging in again")
			return true
		}
	}
}

// relogin logs in again with backoff (1 s doubling to 30 s) until it
// succeeds or ctx ends; meanwhile Problem reports the failure.
func (s *Session) relogin(ctx context.Context) {
	wait := time.Second
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.loginAppRole(lctx)
		cancel()
		if err == nil {
			s.setProblem("")
			return
		}
		s.setProblem(Explain(err).Error())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}
