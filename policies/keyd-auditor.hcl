# keyd-auditor: the security team. Reads the audit chain and reconciles it with the key versions;
# never signs. keyd checks the role with sys/capabilities-self (Vault's default policy) on the
# marker below, which no other keyd policy names.

# Marker of the auditor role; the entry need not exist.
path "{{kv}}/data/roles/auditor" {
  capabilities = ["read"]
}

# Read the audit chain's entries (`keyd audit verify --vault`).
path "{{kv}}/data/audit/*" {
  capabilities = ["read"]
}

# List the audit chain's entries.
path "{{kv}}/metadata/audit" {
  capabilities = ["list"]
}

# Read the lifecycle records, to reconcile them with the chain.
path "{{kv}}/data/records/*" {
  capabilities = ["read"]
}

# List the lifecycle records.
path "{{kv}}/metadata/records" {
  capabilities = ["list"]
}

# Read the client confirmations, to check each one has its event in the chain.
path "{{kv}}/data/propagation/confirmations/*" {
  capabilities = ["read"]
}

# Read the activations of gated keys, to check each unconfirmed one has its event.
path "{{kv}}/data/propagation/activations/*" {
  capabilities = ["read"]
}

# List the activations.
path "{{kv}}/metadata/propagation/activations" {
  capabilities = ["list"]
}

# List the versions that have confirmations.
path "{{kv}}/metadata/propagation/confirmations" {
  capabilities = ["list"]
}

# List each version's confirmations.
path "{{kv}}/metadata/propagation/confirmations/*" {
  capabilities = ["list"]
}

# Read the key's versions and public keys (no private material), to reconcile with the chain.
path "{{mount}}/keys/{{key}}" {
  capabilities = ["read"]
}
