# keyd-server: keyd's own token (VAULT_TOKEN). It manages the key's lifecycle and its KV state,
# and can never sign, export or back up the key: signing always uses the caller's own token.

# Read the key: public keys, creation times, latest and min_* versions (no private material).
path "{{mount}}/keys/{{key}}" {
  capabilities = ["read"]
}

# Rotate: create the next key version.
path "{{mount}}/keys/{{key}}/rotate" {
  capabilities = ["update"]
}

# Destroy the private material of versions below min_available_version (retired keys).
path "{{mount}}/keys/{{key}}/trim" {
  capabilities = ["update"]
}

# Raise min_encryption_version (pin signing) and min_decryption_version (retire); no other field.
path "{{mount}}/keys/{{key}}/config" {
  capabilities = ["update"]
  allowed_parameters = {
    "min_decryption_version" = []
    "min_encryption_version" = []
  }
}

# Never sign with any key of the mount, whatever other policy the token also carries.
path "{{mount}}/sign/*" {
  capabilities = ["deny"]
}

# Never export any key's material.
path "{{mount}}/export/*" {
  capabilities = ["deny"]
}

# Never take a backup (which holds the private material) of any key.
path "{{mount}}/backup/*" {
  capabilities = ["deny"]
}

# Lifecycle records: one per key version, created once (check-and-set 0), never rewritten.
path "{{kv}}/data/records/*" {
  capabilities = ["create", "read"]
}

# List the lifecycle records.
path "{{kv}}/metadata/records" {
  capabilities = ["list"]
}

# Rotation claims: one per version, created once, taken over (check-and-set) when stale.
path "{{kv}}/data/locks/*" {
  capabilities = ["create", "read", "update"]
}

# Emergency intent: recorded before the emergency key is created, deleted once it is complete.
path "{{kv}}/data/intent/emergency" {
  capabilities = ["create", "read", "update", "delete"]
}

# Observed propagation: per client, the JWKS fetches of its instances, merged with check-and-set.
path "{{kv}}/data/propagation/observations/*" {
  capabilities = ["create", "read", "update"]
}

# Observed propagation: client confirmations, each created once (check-and-set 0), never rewritten.
path "{{kv}}/data/propagation/confirmations/*" {
  capabilities = ["create", "read"]
}

# Observed propagation: the actual activation time of a gated key, created once, never rewritten.
path "{{kv}}/data/propagation/activations/*" {
  capabilities = ["create", "read"]
}

# List the activations, to reconcile each one with its audit event (GET /v1/audit).
path "{{kv}}/metadata/propagation/activations" {
  capabilities = ["list"]
}

# List the versions that have confirmations, for the same reconciliation.
path "{{kv}}/metadata/propagation/confirmations" {
  capabilities = ["list"]
}

# List each version's confirmations, for the same reconciliation.
path "{{kv}}/metadata/propagation/confirmations/*" {
  capabilities = ["list"]
}

# Audit chain: each entry is created once and never updated or deleted.
path "{{kv}}/data/audit/*" {
  capabilities = ["create", "read"]
}

# List the audit chain's entries.
path "{{kv}}/metadata/audit" {
  capabilities = ["list"]
}

# Check at start that this token cannot sign (keyd refuses to run if it can).
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Read this token's own TTL, to schedule its renewal.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# Renew this token while keyd runs.
path "auth/token/renew-self" {
  capabilities = ["update"]
}
