package auth

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestPerRole: the first role the token holds wins; an error other than
// "unknown token" from any check is the answer when none holds.
func TestPerRole(t *testing.T) {
	unavailable := errors.New("backend down")
	check := PerRole(func(_ context.Context, token string, r Role) (Principal, error) {
		switch {
		case token == "admin" && r == RoleAdmin:
			return Principal{Role: r, Actor: "a"}, nil
		case token == "admin":
			return Principal{}, ErrPermissionDenied
		case token == "down":
			return Principal{}, fmt.Errorf("check %s: %w", r, unavailable)
		}
		return Principal{}, ErrUnauthenticated
	})
	for _, tt := range []struct {
		token string
		roles []Role
		want  error
	}{
		{"admin", []Role{RoleAuditor, RoleAdmin}, nil},
		{"admin", []Role{RoleSigner}, ErrPermissionDenied},
		{"down", []Role{RoleAdmin}, unavailable},
		{"nobody", []Role{RoleAuditor, RoleAdmin}, ErrUnauthenticated},
		{"nobody", nil, ErrUnauthenticated},
	} {
		p, err := check.Authorize(context.Background(), tt.token, tt.roles...)
		if tt.want == nil && (err != nil || p.Role != RoleAdmin) {
			t.Errorf("%s %v: got %+v, %v; want the admin principal", tt.token, tt.roles, p, err)
		}
		if tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s %v: got %v, want %v", tt.token, tt.roles, err, tt.want)
		}
	}
}

// TestEveryRouteNeedsAKnownRole: the table names only the contract's roles.
func TestEveryRouteNeedsAKnownRole(t *testing.T) {
	for r, roles := range Routes {
		if len(roles) == 0 {
			t.Errorf("%s needs no role", r)
		}
		for _, role := range roles {
			if role != RoleSigner && role != RoleAdmin && role != RoleAuditor {
				t.Errorf("%s needs unknown role %q", r, role)
			}
		}
	}
	if got := Route("GET /healthz").Roles(); got != nil {
		t.Errorf("a public route needs %v", got)
	}
}
