package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	cliIssuer   = "https://lms.example.com/oauth2"
	cliAudience = "openedx"
)

// cliSign signs claims with key under kid, using alg (an HMAC alg takes a
// []byte secret).
func cliSign(t *testing.T, alg string, key any, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// The CLI reads the real clock, so tokens are made around time.Now with
// margins of minutes.
func cliClaims(edit func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": cliIssuer, "aud": cliAudience, "sub": "anon-1", "grant_type": "password",
		"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func runVerify(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = cmdVerify(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCmdVerify(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const kid = "es-1"
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"}}})
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) }))
	defer srv.Close()

	der, _ := x509.MarshalPKIXPublicKey(priv.Public())
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	valid := cliSign(t, "ES256", priv, kid, cliClaims(nil))
	sign := func(edit func(map[string]any)) string { return cliSign(t, "ES256", priv, kid, cliClaims(edit)) }

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr []string // substrings of the one stderr line
	}{
		{"valid from a file", []string{"--jwks", file, "--issuer", "x," + cliIssuer, "--audience", cliAudience, valid}, 0, nil},
		{"valid from a URL", []string{"--jwks", srv.URL, "--issuer", cliIssuer, valid}, 0, nil},
		{"flags after the token", []string{valid, "--jwks", file, "--grant-type", "password"}, 0, nil},
		{"no issuer or audience given", []string{"--jwks", file, valid}, 0, nil},
		{"HS256", []string{"--jwks", file, cliSign(t, "HS256", pemKey, kid, cliClaims(nil))}, 1, []string{"symmetrically signed", "only asymmetric tokens are accepted", "HS256"}},
		{"alg none", []string{"--jwks", file, "eyJhbGciOiJub25lIiwia2lkIjoiZXMtMSJ9.e30."}, 1, []string{"symmetrically signed"}},
		{"expired", []string{"--jwks", file, sign(func(c map[string]any) {
			c["iat"], c["exp"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-10*time.Minute).Unix()
		})}, 1, []string{"expired"}},
		{"lifetime 2h", []string{"--jwks", file, sign(func(c map[string]any) { c["exp"] = time.Now().Add(2 * time.Hour).Unix() })}, 1, []string{"lifetime"}},
		{"max-lifetime shorter", []string{"--jwks", file, "--max-lifetime", "10m", valid}, 1, []string{"lifetime"}},
		{"no iat", []string{"--jwks", file, sign(func(c map[string]any) { delete(c, "iat") })}, 1, []string{"no iat"}},
		{"wrong issuer", []string{"--jwks", file, "--issuer", "https://other", valid}, 1, []string{"issuer"}},
		{"wrong audience", []string{"--jwks", file, "--audience", "ecommerce", valid}, 1, []string{"audience"}},
		{"wrong grant type", []string{"--jwks", file, "--grant-type", "client_credentials", valid}, 1, []string{"grant type"}},
		{"unknown key", []string{"--jwks", file, strings.Replace(valid, valid[:strings.Index(valid, ".")], "eyJhbGciOiJFUzI1NiIsImtpZCI6Im90aGVyIn0", 1)}, 1, []string{"unknown key"}},
		{"bad signature", []string{"--jwks", file, valid[:strings.LastIndex(valid, ".")+1] + "AAAA" + valid[strings.LastIndex(valid, ".")+5:]}, 1, []string{"signature"}},
		{"malformed", []string{"--jwks", file, "not-a-token"}, 1, []string{"malformed"}},
		{"missing jwks file", []string{"--jwks", filepath.Join(t.TempDir(), "none.json"), valid}, 1, []string{"read jwks"}},
		{"unreachable jwks URL", []string{"--jwks", "http://127.0.0.1:1/jwks.json", valid}, 1, []string{"unavailable"}},
		{"leeway 0 refuses 30s late", []string{"--jwks", file, "--leeway", "0", sign(func(c map[string]any) {
			c["iat"], c["exp"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-30*time.Second).Unix()
		})}, 1, []string{"expired"}},
		{"default leeway accepts 30s late", []string{"--jwks", file, sign(func(c map[string]any) {
			c["iat"], c["exp"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-30*time.Second).Unix()
		})}, 0, nil},

		{"no jwks", []string{valid}, 2, []string{"--jwks is required"}},
		{"no token", []string{"--jwks", file}, 2, []string{"one TOKEN"}},
		{"two tokens", []string{"--jwks", file, valid, valid}, 2, []string{"one TOKEN"}},
		{"unknown flag", []string{"--jwks", file, "--bogus", valid}, 2, []string{"bogus"}},
		{"bad duration", []string{"--jwks", file, "--leeway", "soon", valid}, 2, []string{"leeway"}},
		{"negative leeway", []string{"--jwks", file, "--leeway", "-1m", valid}, 2, []string{"leeway"}},
		{"max-lifetime above 1h", []string{"--jwks", file, "--max-lifetime", "2h", valid}, 2, []string{"max-lifetime"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runVerify(tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr)
			}
			switch code {
			case 0:
				var claims map[string]any
				if err := json.Unmarshal([]byte(stdout), &claims); err != nil || claims["sub"] != "anon-1" {
					t.Errorf("stdout %q: not the claims (%v)", stdout, err)
				}
				if stderr != "" {
					t.Errorf("stderr %q on success", stderr)
				}
			case 1:
				if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "keyd verify: ") {
					t.Errorf("want one stderr line and no stdout; got stdout %q stderr %q", stdout, stderr)
				}
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q does not contain %q", stderr, want)
				}
			}
		})
	}
}

func TestCmdVerifyHelp(t *testing.T) {
	code, _, stderr := runVerify("-h")
	if code != 0 || !strings.Contains(stderr, "--jwks URL|FILE") {
		t.Errorf("-h: exit %d, stderr %q", code, stderr)
	}
}

func TestCmdVerifyEdxSetting(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv.Public(), KeyID: "ec", Algorithm: "ES256", Use: "sig"}}})
	if _, err := edxSetting(jwks); err == nil || !strings.Contains(err.Error(), "only RSA") {
		t.Errorf("EC key: got %v", err)
	}
}
