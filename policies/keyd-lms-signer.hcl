# keyd-lms-signer: the LMS's token. It can sign with the keyd key and do nothing else.
# keyd tells an unknown token (401) from one without a role (403) with auth/token/lookup-self,
# which Vault's default policy grants; create LMS tokens with the default policy (Vault's default).

# Sign with the key; keyd pins key_version and Vault refuses versions below min_encryption_version.
path "{{mount}}/sign/{{key}}" {
  capabilities = ["update"]
}

# The same sign call with the hash algorithm in the URL (sign/<key>/<hash>).
path "{{mount}}/sign/{{key}}/*" {
  capabilities = ["update"]
}
