// Package auth names the roles of keyd's contract and the caller a role was
// granted to: one vocabulary for the code that decides roles (local tokens,
// Vault policies) and the code that acts on them.
package auth

import "github.com/openedx-keyd/keyd/internal/signer"

// Role is what a credential may do.
type Role string

// The roles of the contract.
const (
	RoleSigner  Role = "signer"  // POST /v1/sign (Vault: policy keyd-lms-signer, may sign with the key)
	RoleAdmin   Role = "admin"   // POST /v1/rotate, GET /v1/keys (Vault: policy keyd-admin)
	RoleAuditor Role = "auditor" // GET /v1/audit, GET /v1/keys (Vault: policy keyd-auditor)
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
