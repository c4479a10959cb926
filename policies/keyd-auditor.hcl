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

# Read and list the propagation decisions (confirmations, activations), to check each one has
# its event in the chain.
path "{{kv}}/data/propagation/confirmations/*" {
  capabilities = ["read"]
}

path "{{kv}}/data/propagation/activations/*" {
  capabilities = ["read"]
}

path "{{kv}}/metadata/propagation/activations" {
  capabilities = ["list"]
}

path "{{kv}}/metadata/propagation/confirmations" {
  capabilities = ["list"]
}

path "{{kv}}/metadata/propagation/confirmations/*" {
  capabilities = ["list"]
}

# Read the key's versions and public keys (no private material), to reconcile with the chain.
path "{{mount}}/keys/{{key}}" {
  capabilities = ["read"]
}
