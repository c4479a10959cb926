package auth_test

import (
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/signer/vault"
)

// Vault mode's per-role check (a role is a Vault policy) is an Authorizer
// through PerRole: the role loop lives here, not in the wiring.
var _ auth.Authorizer = auth.PerRole((*vault.Backend)(nil).Authorize)
