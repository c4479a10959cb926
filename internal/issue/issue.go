// Package issue issues tokens: it turns a POST /v1/sign request body into
// a signed JWT (the claims policy, the key the lifecycle rules pick at this
// instant, the backend's signature, the JWS). It knows neither HTTP nor how
// a backend reaches its keys.
//
// Names: package signer is the key backend's interface (signer.Signer.Sign
// makes one raw signature over a JWS signing input with one key version);
// package issue is the service above it (Service.Issue makes a whole token
// from a request); the HTTP surface asks an api.Issuer. "Sign" alone is
// kept for the backend's raw signature and for the contract's route.
package issue

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/openedx-keyd/keyd/internal/claims"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/metrics"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// Lifecycle is what issuing needs from the rotation manager.
type Lifecycle interface {
	// SigningKey is the key a signature made at now uses, by the rules at
	// that instant (rotation.ErrNoKey, rotation.ErrEmergencyPending).
	SigningKey(now time.Time) (*rotation.Snapshot, signer.SigningKey, error)
	// Refresh re-reads the keys unless a snapshot newer than since exists;
	// it never creates or destroys a key.
	Refresh(ctx context.Context, since time.Time) error
	// Signed records a signature that version v made at t.
	Signed(v int, t time.Time)
}

// Config wires a Service. Backend, Lifecycle and Policy are required.
type Config struct {
	Backend   signer.Signer
	Lifecycle Lifecycle
	Policy    claims.Policy
	Clock     clock.Clock      // default clock.Real
	Metrics   *metrics.Metrics // may be nil
	Logger    *slog.Logger     // default slog.Default
}

// Service issues signed tokens.
type Service struct{ cfg Config }

// New returns a Service; nil Clock and Logger default.
func New(cfg Config) *Service {
	cfg.Clock = cmp.Or[clock.Clock](cfg.Clock, clock.Real{})
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg}
}

// Token is a signed JWT and what the answer and the log say about it.
type Token struct {
	JWT       string
	KID       string
	Alg       signer.Algorithm
	ExpiresAt time.Time
}

// Issue applies the policy to a sign request body at the service's now, picks
// the key the rules choose at that instant, and has the backend sign with
// cred. When the backend refuses that version (another replica activated a
// newer one and pinned signing to it), it re-reads the keys and signs once
// more with the new key. Errors: a *claims.Error for a refused request,
// rotation.ErrNoKey or rotation.ErrEmergencyPending when no key may sign,
// and the backend's own (signer.ErrUnavailable, ...). actor names the
// caller in the log.
func (s *Service) Issue(ctx context.Context, cred signer.Credential, actor string, body []byte) (Token, error) {
	now := s.cfg.Clock.Now()
	tok, err := s.cfg.Policy.Build(body, now, rand.Reader)
	if err != nil {
		s.cfg.Metrics.SignRequest("refused", "")
		return Token{}, err
	}
	// The rules at this instant pick the key, not the last snapshot's
	// active one: a pending key that has reached activates_at signs even if
	// the lifecycle loop is stalled, and a key an emergency replaces never.
	snap, k, err := s.cfg.Lifecycle.SigningKey(now)
	if err != nil {
		if errors.Is(err, rotation.ErrEmergencyPending) {
			s.cfg.Metrics.SignRequest("emergency_pending", "")
		} else {
			s.cfg.Metrics.SignRequest("no_key", "")
		}
		return Token{}, err
	}
	jwt, err := signer.Assemble(ctx, s.cfg.Backend, cred, k, tok.Payload)
	if errors.Is(err, signer.ErrNoKey) {
		k, jwt, err = s.retry(ctx, cred, snap.At, k, tok.Payload, err)
	}
	if err != nil {
		s.cfg.Logger.Warn("sign failed", "kid", k.KID, "jti", tok.JTI, "sub", tok.Sub, "grant_type", tok.GrantType, "actor", actor, "result", "error", "err", err)
		s.cfg.Metrics.SignRequest("error", string(k.Alg))
		return Token{}, err
	}
	s.cfg.Lifecycle.Signed(k.Version, s.cfg.Clock.Now()) // retirement counts from here
	s.cfg.Logger.Info("signed", "kid", k.KID, "jti", tok.JTI, "sub", tok.Sub, "grant_type", tok.GrantType, "actor", actor, "result", "ok")
	s.cfg.Metrics.SignRequest("ok", string(k.Alg))
	return Token{JWT: jwt, KID: k.KID, Alg: k.Alg, ExpiresAt: tok.ExpiresAt}, nil
}

// retry re-reads the keys after the backend refused version k (signErr) and
// signs once more when the rules now pick another version. A refusal that
// remains is rotation.ErrNoKey.
func (s *Service) retry(ctx context.Context, cred signer.Credential, since time.Time, k signer.SigningKey, payload []byte, signErr error) (signer.SigningKey, string, error) {
	err := signErr
	jwt := ""
	if rerr := s.cfg.Lifecycle.Refresh(ctx, since); rerr == nil {
		if _, k2, kerr := s.cfg.Lifecycle.SigningKey(s.cfg.Clock.Now()); kerr != nil {
			err = kerr
		} else if k2.Version != k.Version {
			k = k2
			jwt, err = signer.Assemble(ctx, s.cfg.Backend, cred, k, payload)
		}
	}
	if errors.Is(err, signer.ErrNoKey) {
		err = fmt.Errorf("%w: the backend refuses version %d: %w", rotation.ErrNoKey, k.Version, err)
	}
	return k, jwt, err
}
