package vault

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// authTTL bounds how long a positive Authorize answer is reused.
const authTTL = 30 * time.Second

// ErrTokenCanSign is returned by CheckCannotSign.
var ErrTokenCanSign = errors.New("keyd's own Vault token can sign with the key; refusing to start (use a token with the keyd-server policy)")

// marker returns the path and capability that hold role: the admin and
// auditor markers are named by their policy alone; the signer role is the
// ability to sign with the key.
func (b *Backend) marker(role auth.Role) (path, capability string, err error) {
	switch role {
	case auth.RoleAdmin:
		return b.kvPath(rolePath("admin")), "read", nil
	case auth.RoleAuditor:
		return b.kvPath(rolePath("auditor")), "read", nil
	case auth.RoleSigner:
		return b.signPath(), "update", nil
	}
	return "", "", fmt.Errorf("vault: unknown role %q", role)
}

// Authorize asks Vault, with the caller's own token, whether it holds role
// (sys/capabilities-self on the role's marker path). An unknown or expired
// token is signer.ErrUnauthenticated, a valid one without the role
// signer.ErrPermissionDenied. A positive answer is reused for up to 30 s
// (never past the token's TTL), so a revoked token keeps an admin or
// auditor role that long at most; signatures are always Vault's decision.
// The principal's Actor names the caller without revealing its token:
// "role:<role> accessor:<token accessor> entity:<entity id>".
func (b *Backend) Authorize(ctx context.Context, token string, role auth.Role) (auth.Principal, error) {
	path, capability, err := b.marker(role)
	if err != nil {
		return auth.Principal{}, err
	}
	if token == "" {
		return auth.Principal{}, fmt.Errorf("%w: no vault token", signer.ErrUnauthenticated)
	}
	cred := signer.Credential{Token: token}
	k := hashKey("role", string(role), token)
	if p, ok := b.principals.get(k, b.clock.Now()); ok {
		p.Credential = cred // the cache holds no token
		return p, nil
	}
	// Concurrent requests of one caller share one check: when the cached
	// answer expires under load, Vault gets one lookup, not one per request
	// in flight (each of which would also need a connection of its own).
	// The check runs within the sign timeout whatever happens to the
	// request that started it; each request waits for it within its own.
	ch := b.authFlights.DoChan(string(k[:]), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.signTimeout)
		defer cancel()
		return b.authorize(ctx, token, role, path, capability, k)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return auth.Principal{}, r.Err
		}
		p := r.Val.(auth.Principal)
		p.Credential = cred
		return p, nil
	case <-ctx.Done():
		return auth.Principal{}, fmt.Errorf("%w: no answer from vault within the request's budget: %w", signer.ErrUnavailable, ctx.Err())
	}
}

// authorize asks Vault whether token holds role (capability on path) and
// caches a positive answer under k. The principal it returns holds no token.
func (b *Backend) authorize(ctx context.Context, token string, role auth.Role, path, capability string, k [32]byte) (auth.Principal, error) {
	c, err := b.callerClient(token)
	if err != nil {
		return auth.Principal{}, err
	}
	ctx = Idempotent(ctx) // lookups and capability checks change nothing
	self, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		if statusOf(err) == 403 {
			return auth.Principal{}, fmt.Errorf("%w: vault does not know the token", signer.ErrUnauthenticated)
		}
		return auth.Principal{}, wrap("token lookup", err)
	}
	caps, err := c.Sys().CapabilitiesSelfWithContext(ctx, path)
	if err != nil {
		return auth.Principal{}, b.callerError(ctx, c, "check capabilities", err)
	}
	if !slices.Contains(caps, capability) && !slices.Contains(caps, "root") {
		return auth.Principal{}, fmt.Errorf("%w: the token does not hold the %s role", signer.ErrPermissionDenied, role)
	}

	accessor, _ := self.TokenAccessor()
	entity, _ := self.Data["entity_id"].(string)
	p := auth.Principal{Role: role, Actor: fmt.Sprintf("role:%s accessor:%s entity:%s", role, cmp.Or(accessor, "none"), cmp.Or(entity, "none"))}
	now := b.clock.Now()
	until := now.Add(authTTL)
	if ttl, _ := self.TokenTTL(); ttl > 0 && now.Add(ttl).Before(until) {
		until = now.Add(ttl)
	}
	b.principals.put(k, p, until, now)
	return p, nil
}

// CheckCannotSign returns ErrTokenCanSign when keyd's own token could sign
// with the key (a root or over-broad token), checked with one
// sys/capabilities-self call on the sign path and all its hash-algorithm forms.
func (b *Backend) CheckCannotSign(ctx context.Context) error {
	// The sign endpoint also takes the hash algorithm as a path segment.
	paths := []string{b.signPath()}
	for _, h := range []string{"sha1", "sha2-224", "sha2-256", "sha2-384", "sha2-512", "sha3-224", "sha3-256", "sha3-384", "sha3-512", "none"} {
		paths = append(paths, b.signPath()+"/"+h)
	}
	sec, err := b.client.Logical().WriteWithContext(ctx, "sys/capabilities-self", map[string]any{"paths": paths})
	if err != nil {
		return wrap("check keyd's own capabilities", err)
	}
	if sec == nil || sec.Data == nil {
		return errors.New("vault: check keyd's own capabilities: empty answer")
	}
	for _, p := range paths {
		caps, _ := sec.Data[p].([]any)
		for _, c := range caps {
			if c == "update" || c == "create" || c == "root" {
				return ErrTokenCanSign
			}
		}
	}
	return nil
}

// Roles authorizes a caller for the first of several roles its token holds:
// the API's Authorizer over Backend.Authorize.
type Roles struct{ B *Backend }

// Authorize returns the principal of the first role in roles that token
// holds. When it holds none, the error is ErrUnauthenticated unless a role
// was refused for another reason (a known token without the role, or Vault
// unavailable): then the last such error.
func (a Roles) Authorize(ctx context.Context, token string, roles ...auth.Role) (auth.Principal, error) {
	err := signer.ErrUnauthenticated
	for _, r := range roles {
		p, e := a.B.Authorize(ctx, token, r)
		if e == nil {
			return p, nil
		}
		if !errors.Is(e, signer.ErrUnauthenticated) {
			err = e // a known token without this role, or Vault unavailable
		}
	}
	return auth.Principal{}, err
}
