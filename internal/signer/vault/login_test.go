package vault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/policies"
)

// A static token with a 3 s TTL is renewed by the lifetime watcher past
// that TTL; a root token (no TTL) needs no renewal.
func TestSessionRenewsAToken(t *testing.T) {
	e := setup(t, signer.RS512)
	sec, err := e.root.Auth().Token().Create(&api.TokenCreateRequest{
		Policies: []string{policies.Server}, TTL: "3s", ExplicitMaxTTL: "1h", NoDefaultPolicy: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := e.srv.Client(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := NewSession(ctx, c, nil, Login{Method: "token", Token: sec.Auth.ClientToken}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go s.Run(ctx)
	b := e.newBackend(t, c, nil)
	// Wall time is the point: Vault expires the token 3 s after it was
	// created unless the watcher renews it.
	time.Sleep(4500 * time.Millisecond) // past the original 3s TTL
	if _, err := b.Keys(context.Background()); err != nil {
		t.Fatalf("token expired despite renewal: %v", err)
	}
	// keyd-server works without the default policy: it grants itself what it needs.
	if err := b.CheckCannotSign(context.Background()); err != nil {
		t.Errorf("CheckCannotSign without the default policy: %v", err)
	}
	if p := s.Problem(); p != "" {
		t.Errorf("problem %q", p)
	}
	rs, err := NewSession(ctx, e.srv.Client(t, ""), nil, Login{Token: e.srv.RootToken}, nil)
	if err != nil {
		t.Fatalf("root token: %v", err)
	}
	go rs.Run(ctx)
}

// AppRole: a token TTL of 2 s (max 4 s) is renewed, then replaced by a new
// login, for several TTLs; a revoked token is noticed at the next 403 and
// replaced; a login that fails is reported by Problem while it lasts.
func TestSessionAppRole(t *testing.T) {
	e := setup(t, signer.ES256)
	mount := "approle-" + e.kv
	if err := e.root.Sys().EnableAuthWithOptions(mount, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	role := mount + "/role/keyd-server"
	if _, err := e.root.Logical().Write("auth/"+role, map[string]any{
		"token_policies": policies.Server, "token_ttl": "2s", "token_max_ttl": "4s",
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := e.root.Logical().Read("auth/" + role + "/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := e.root.Logical().Write("auth/"+role+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(file, []byte(sid.Data["secret_id"].(string)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, router, err := NewRoutedClient([]string{e.srv.Addr}, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := NewSession(ctx, c, router, Login{Method: "approle", RoleID: rid.Data["role_id"].(string), SecretIDFile: file, Mount: mount}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go s.Run(ctx)
	b := e.newBackend(t, c, nil)
	for i := range 16 { // 8 s: four TTLs, two max TTLs
		if _, err := b.Keys(ctx); err != nil {
			t.Fatalf("after %v: %v", time.Duration(i)*500*time.Millisecond, err)
		}
		// Wall time is the point: Vault's TTLs run on its own clock, and
		// the token must keep working across them.
		time.Sleep(500 * time.Millisecond)
	}

	// Revoked: the next 403 makes the session look, then log in again.
	if err := e.root.Auth().Token().RevokeOrphan(c.Token()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Keys(ctx); err == nil {
		t.Fatal("keys with a revoked token")
	}
	var keysErr error
	waitUntil(t, 5*time.Second, func() string {
		return fmt.Sprintf("no new login after the revocation: %v (problem %q)", keysErr, s.Problem())
	}, func() bool {
		_, keysErr = b.Keys(ctx)
		return keysErr == nil
	})

	// A login that fails (the secret ID is gone) is reported while it lasts.
	if err := os.WriteFile(file, []byte("not-a-secret-id"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.root.Auth().Token().RevokeOrphan(c.Token()); err != nil {
		t.Fatal(err)
	}
	_, _ = b.Keys(ctx)
	waitUntil(t, 5*time.Second, func() string { return fmt.Sprintf("a failing login is not reported: %q", s.Problem()) }, func() bool {
		p := s.Problem()
		return p != "" && p != "Vault no longer knows keyd's own token (revoked or expired); logging in again"
	})
	t.Logf("problem: %s", s.Problem())
	if err := os.WriteFile(file, []byte(sid.Data["secret_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() string { return fmt.Sprintf("still failing after the secret ID came back: %q", s.Problem()) },
		func() bool { return s.Problem() == "" })
	if _, err := b.Keys(ctx); err != nil {
		t.Fatalf("after the new login: %v", err)
	}
}
