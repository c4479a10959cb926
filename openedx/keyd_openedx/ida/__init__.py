"""The IDA key set: JWT_AUTH["JWT_PUBLIC_SIGNING_JWK_SET"] follows keyd's JWKS (app keyd_jwks)."""
