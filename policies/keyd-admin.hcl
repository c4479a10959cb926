# keyd-admin: a keyd administrator (rotate, list keys). keyd asks Vault, with the caller's own
# token and sys/capabilities-self (granted by Vault's default policy), whether it can read the
# marker below; no other keyd policy names that path. The rotation itself uses keyd's own token.

# Marker of the admin role; the entry need not exist.
path "{{kv}}/data/roles/admin" {
  capabilities = ["read"]
}
