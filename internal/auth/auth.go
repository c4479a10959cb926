// Package auth is keyd's authorization, in one place: the roles of the
// contract, which route needs which (Routes), the one interface the HTTP
// surface asks (Authorizer), its errors, and local mode's token store
// (LocalTokens). Vault mode's authorizer lives with the Vault calls
// (internal/signer/vault: a role is a Vault policy) and plugs in through
// PerRole.
package auth

import (
	"context"
	"errors"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Authorizer decides whether a bearer token holds one of roles. It returns
// ErrUnauthenticated for an unknown token and ErrPermissionDenied for a
// known token without the role.
type Authorizer interface {
	Authorize(ctx context.Context, token string, roles ...Role) (Principal, error)
}

// The errors an Authorizer returns; the same values as the backend's own
// (a Vault token refused at the sign call is a 403 as well).
var (
	ErrUnauthenticated  = signer.ErrUnauthenticated
	ErrPermissionDenied = signer.ErrPermissionDenied
)

// PerRole adapts a check of one role at a time (Vault: does the token hold
// the role's policy) to an Authorizer: the first of roles the token holds
// wins. The error is ErrUnauthenticated only when every check said so;
// otherwise the last other one (a known token without the role, or the
// backend unavailable).
type PerRole func(ctx context.Context, token string, r Role) (Principal, error)

// Authorize implements Authorizer.
func (f PerRole) Authorize(ctx context.Context, token string, roles ...Role) (Principal, error) {
	err := ErrUnauthenticated
	for _, r := range roles {
		p, e := f(ctx, token, r)
		if e == nil {
			return p, nil
		}
		if !errors.Is(e, ErrUnauthenticated) {
			err = e
		}
	}
	return Principal{}, err
}

// Role is what a credential may do.
type Role string

// The roles of the contract.
const (
	RoleSigner  Role = "signer"  // Vault: policy keyd-lms-signer, may sign with the key
	RoleAdmin   Role = "admin"   // Vault: policy keyd-admin
	RoleAuditor Role = "auditor" // Vault: policy keyd-auditor
)

// Roles lists every role.
var Roles = []Role{RoleSigner, RoleAdmin, RoleAuditor}

// Principal is an authenticated caller and the role it was granted.
type Principal struct {
	Role Role
	// Actor names the caller in logs and audit events; never the token.
	Actor string
	// Credential is what the caller presented, passed to the backend for
	// the sign call (Vault: the caller's own token).
	Credential signer.Credential
}

// Route is a route of the contract that needs a role: "METHOD /path".
type Route string

// The routes that need a role (every other route is public).
const (
	RouteSign        Route = "POST /v1/sign"
	RouteKeys        Route = "GET /v1/keys"
	RouteRotate      Route = "POST /v1/rotate"
	RouteAudit       Route = "GET /v1/audit"
	RouteAuditReport Route = "GET /v1/audit/report"
	RoutePropagation Route = "GET /v1/propagation"
	RouteConfirm     Route = "POST /v1/propagation/confirm"
)

// Routes is which roles may call each route: the contract's table.
var Routes = map[Route][]Role{
	RouteSign:        {RoleSigner},
	RouteKeys:        {RoleAuditor, RoleAdmin},
	RouteRotate:      {RoleAdmin},
	RouteAudit:       {RoleAuditor},
	RouteAuditReport: {RoleAuditor, RoleAdmin},
	RoutePropagation: {RoleAuditor, RoleAdmin},
	RouteConfirm:     {RoleAdmin},
}

// Roles is who may call r (nil for a route not in the table: no role).
func (r Route) Roles() []Role { return Routes[r] }
