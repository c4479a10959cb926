package verify

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// pyjwtScript makes a key per algorithm with `cryptography`, signs a token
// with PyJWT, and prints {"jwks": ..., "tokens": {alg: token}}.
const pyjwtScript = `
import json, sys
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519
from jwt.algorithms import RSAAlgorithm, ECAlgorithm, OKPAlgorithm

iat = int(sys.argv[1])
claims = {"iss": sys.argv[2], "aud": sys.argv[3], "sub": "anon-1234",
          "preferred_username": "edx", "grant_type": "password",
          "iat": iat, "exp": iat + 600, "jti": "py-1"}
makers = {
    "RS512": (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
    "PS256": (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
    "ES256": (lambda: ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
    "EdDSA": (lambda: ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm),
}
keys, tokens = [], {}
for alg, (make, algorithm) in makers.items():
    priv = make()
    kid = "pyjwt-" + alg
    jwk = json.loads(algorithm.to_jwk(priv.public_key()))
    jwk.update(kid=kid, alg=alg, use="sig")
    keys.append(jwk)
    tokens[alg] = jwt.encode(claims, priv, algorithm=alg, headers={"kid": kid})
print(json.dumps({"jwks": {"keys": keys}, "tokens": tokens}))
`

// TestVerifyPyJWT verifies tokens PyJWT signs with its own keys, the way the
// Open edX LMS does. It needs Debian's python3-jwt; without it the test skips,
// or fails when CI is set.
func TestVerifyPyJWT(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import jwt, cryptography").Run(); err != nil {
		msg := "PyJWT interop needs " + python + " with python3-jwt (apt-get install python3-jwt): " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	out, err := exec.Command(python, "-c", pyjwtScript, strconv.FormatInt(epoch.Unix(), 10), testIssuer, testAudience).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var got struct {
		JWKS   json.RawMessage   `json:"jwks"`
		Tokens map[string]string `json:"tokens"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python output %s: %v", out, err)
	}
	keys, err := NewStaticKeySet(got.JWKS)
	if err != nil {
		t.Fatal(err)
	}
	v := newTestVerifier(t, keys, newClock().Now)
	for _, alg := range []string{"RS512", "PS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			token, ok := got.Tokens[alg]
			if !ok {
				t.Fatalf("no %s token from PyJWT", alg)
			}
			claims, err := v.Verify(context.Background(), token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if claims.Username() != "edx" || claims.ID != "py-1" || !claims.Expiry.Equal(epoch.Add(600e9)) {
				t.Errorf("claims %+v", claims)
			}
		})
	}
}

// pyjwtEdxScript is what an Open edX IDA does with JWT_PUBLIC_SIGNING_JWK_SET
// (edx-drf-extensions): load the set with PyJWT and try every key.
const pyjwtEdxScript = `
import json, sys
import jwt
setting, token = sys.argv[1], sys.argv[2]
for key in jwt.PyJWKSet.from_json(setting).keys:
    try:
        claims = jwt.decode(token, key.key, algorithms=["RS256", "RS512"], audience=sys.argv[3])
        print(claims["sub"])
        sys.exit(0)
    except jwt.InvalidTokenError as e:
        print(e, file=sys.stderr)
sys.exit(1)
`

// TestVerifyEdxSettingPyJWT: the EdxSetting value works in a Python IDA.
func TestVerifyEdxSettingPyJWT(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import jwt, cryptography").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("needs python3-jwt:", err)
		}
		t.Skip("needs /usr/bin/python3 with python3-jwt:", err)
	}
	a, b := newKey(t, "RS512", "v1"), newKey(t, "RS256", "v2")
	setting, err := EdxSetting(jwksOf(t, a, b))
	if err != nil {
		t.Fatal(err)
	}
	claims := claimsAt(epoch)
	claims["iat"], claims["exp"] = 1e9, 4e9 // PyJWT checks exp against the real clock
	cmd := exec.Command(python, "-c", pyjwtEdxScript, string(setting), sign(t, b, claims, nil, false), testAudience)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || string(out) != "anon-1234\n" {
		t.Fatalf("PyJWT with the pasted setting: %v: %s%s", err, out, stderr.String())
	}
}
