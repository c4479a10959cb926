// Package interop checks keyd's tokens with verifiers we did not write:
// jwcrypto (Debian's python3-jwcrypto) and the npm package jose with its
// remote JWKS client. PyJWT is covered in cmd/keyd.
package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openedx-keyd/keyd/internal/testkeyd"
)

var keydBin string

func TestMain(m *testing.M) { testkeyd.Main(m, &keydBin) }

// need fails (in CI) or skips (elsewhere) when a tool is missing.
func need(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	msg := what + " is missing; .ci/run installs it"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

const (
	issuer   = "http://localhost:18000/oauth2"
	audience = "openedx"
)

func sign(t *testing.T, url, token string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"claims": map[string]any{
		"iss": issuer, "aud": audience, "sub": "anon-7", "grant_type": "password", "preferred_username": "staff",
	}})
	req, _ := http.NewRequestWithContext(context.Background(), "POST", url+"/v1/sign", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct{ Token string }
	if resp.StatusCode != 200 || json.Unmarshal(raw, &out) != nil {
		t.Fatalf("sign: %d %s", resp.StatusCode, raw)
	}
	return out.Token
}

// tamper flips one character of the payload.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p := []byte(parts[1])
	if p[5] == 'A' {
		p[5] = 'B'
	} else {
		p[5] = 'A'
	}
	parts[1] = string(p)
	return strings.Join(parts, ".")
}

type verifier struct {
	name string
	cmd  func(jwksURL, token, alg string) *exec.Cmd
}

func TestForeignVerifiersAcceptKeydTokens(t *testing.T) {
	_, pyErr := exec.Command("/usr/bin/python3", "-c", "import jwcrypto").CombinedOutput()
	need(t, "Debian's python3-jwcrypto", pyErr == nil)
	_, nodeErr := exec.LookPath("node")
	_, joseErr := os.Stat(filepath.Join("js", "node_modules", "jose"))
	need(t, "node with the npm package jose (cd interop/js && npm ci)", nodeErr == nil && joseErr == nil)

	verifiers := []verifier{
		{"jwcrypto", func(u, tok, alg string) *exec.Cmd {
			return exec.Command("/usr/bin/python3", "jwcrypto_verify.py", u, tok, alg, issuer, audience)
		}},
		{"jose", func(u, tok, alg string) *exec.Cmd {
			return exec.Command("node", "js/verify.mjs", u, tok, alg, issuer, audience)
		}},
	}
	env := []string{"KEYD_SIGNER_TOKEN=interop-signer-0123456789abcdef0123", "KEYD_ADMIN_TOKEN=interop-admin-0123456789abcdef0123", "KEYD_AUDITOR_TOKEN=interop-auditor-0123456789abcdef0123"}
	for _, alg := range []string{"RS512", "RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k := testkeyd.Start(t, keydBin, env, "--data-dir", t.TempDir(), "--algorithm", alg)
			tok := sign(t, k.URL, "interop-signer-0123456789abcdef0123")
			jwksURL := k.URL + "/.well-known/jwks.json"
			for _, v := range verifiers {
				out, err := v.cmd(jwksURL, tok, alg).CombinedOutput()
				if err != nil {
					t.Errorf("%s refused a valid %s token: %v\n%s", v.name, alg, err, out)
					continue
				}
				var got struct {
					Header  map[string]any
					Payload map[string]any
				}
				if err := json.Unmarshal(out, &got); err != nil {
					t.Errorf("%s output: %v\n%s", v.name, err, out)
					continue
				}
				if got.Header["alg"] != alg || got.Payload["grant_type"] != "password" || got.Payload["sub"] != "anon-7" {
					t.Errorf("%s decoded %+v", v.name, got)
				}
				if out, err := v.cmd(jwksURL, tamper(tok), alg).CombinedOutput(); err == nil {
					t.Errorf("%s accepted a tampered token:\n%s", v.name, out)
				}
			}
		})
	}
}
