"""Verifies one keyd token with jwcrypto against keyd's JWKS URL.
usage: jwcrypto_verify.py JWKS_URL TOKEN ALG ISSUER AUDIENCE"""
import json, sys, urllib.request

from jwcrypto import jwk, jwt

url, token, alg, issuer, audience = sys.argv[1:6]
with urllib.request.urlopen(url, timeout=10) as resp:
    keyset = jwk.JWKSet.from_json(resp.read())
try:
    t = jwt.JWT(jwt=token, key=keyset, algs=[alg], check_claims={"iss": issuer, "aud": audience, "exp": None})
except Exception as e:  # jwcrypto raises several types; any is a refusal
    print(f"jwcrypto refused the token: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps({"header": json.loads(t.header), "payload": json.loads(t.claims)}))
