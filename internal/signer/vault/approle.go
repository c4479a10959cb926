package vault

import (
	"context"

	"github.com/openedx-keyd/keyd/policies"

	"github.com/hashicorp/vault/api"
)

// AppRole names of `keyd bootstrap --approle`.
const (
	AppRoleMount = "approle"
	AppRoleName  = "keyd-server"
)

// BootstrapAppRole enables the AppRole auth method (at "approle") when
// missing and writes the role keyd-server logs in with: its tokens carry
// the keyd-server policy alone, live 1h and are renewed up to 24h, then keyd
// logs in again. It returns one line per step, and how to get the role and
// secret IDs keyd serve reads (--vault-auth approle). A token Vault refuses
// is said to need an operator's rights.
func BootstrapAppRole(ctx context.Context, client *api.Client) (did []string, err error) {
	defer func() { err = needsOperator(err) }()
	auths, err := authMounts(ctx, client)
	if err != nil {
		return nil, err
	}
	line, err := ensureMount(ctx, auths, appRoleMount(client))
	if err != nil {
		return did, err
	}
	did = append(did, line)
	role := appRolePath(AppRoleName)
	if _, err := client.Logical().WriteWithContext(ctx, role, map[string]any{
		"token_policies": []string{policies.Server},
		"token_ttl":      "1h",
		"token_max_ttl":  "24h",
		"token_type":     "service",
	}); err != nil {
		return did, wrap("write "+role, err)
	}
	did = append(did,
		"approle role "+AppRoleName+": written (policy "+policies.Server+", token TTL 1h, renewed up to 24h)",
		"  role ID (not secret):   vault read -field=role_id "+role+"/role-id",
		"  secret ID (a secret):   (umask 077; vault write -f -field=secret_id "+role+"/secret-id > /etc/keyd/secret-id)",
		"  then: keyd serve --backend vault --vault-auth approle with KEYD_VAULT_ROLE_ID=<role ID> KEYD_VAULT_SECRET_ID_FILE=/etc/keyd/secret-id",
	)
	return did, nil
}
