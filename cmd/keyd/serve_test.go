package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/testkeyd"
)

// keydBin is the keyd binary built once for this test binary by TestMain.
var keydBin string

func TestMain(m *testing.M) { testkeyd.Main(m, &keydBin) }

// defaultIssuer is the contract's default --issuer.
const defaultIssuer = "http://localhost:18000/oauth2"

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// keydProc is a running `keyd serve`.
type keydProc struct {
	url     string
	dataDir string
	cmd     *exec.Cmd
	stderr  *syncBuffer
	done    chan struct{} // closed once the process has exited
	waitErr error
}

// keydEnv is the test's environment without any KEYD_* variable, plus extra.
func keydEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startKeyd runs `keyd serve` on a free port with dataDir, env (KEYD_*
// assignments) and args, and waits until /readyz answers 200.
func startKeyd(t *testing.T, dataDir string, env []string, args ...string) *keydProc {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := &keydProc{url: "http://" + addr, dataDir: dataDir, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(keydBin, append([]string{"serve", "--listen", addr, "--data-dir", dataDir}, args...)...)
	p.cmd.Env = keydEnv(env...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start keyd: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("keyd %s stderr:\n%s", addr, p.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("keyd exited before it was ready (%v):\n%s", p.waitErr, p.stderr.String())
		default:
		}
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("keyd not ready after 30s:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the process for readiness
	}
}

// stop sends SIGTERM and expects a clean exit.
func (p *keydProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("keyd did not stop within 20s of SIGTERM:\n%s", p.stderr.String())
	}
	if p.waitErr != nil {
		t.Errorf("keyd exited with %v after SIGTERM, want 0:\n%s", p.waitErr, p.stderr.String())
	}
}

// token reads the generated token of role from the data dir.
func (p *keydProc) token(t *testing.T, role string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(p.dataDir, "tokens", role))
	if err != nil {
		t.Fatalf("read the %s token: %v", role, err)
	}
	return strings.TrimSpace(string(raw))
}

// call sends a JSON request and returns the status and body.
func (p *keydProc) call(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, p.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

type signed struct {
	Token     string `json:"token"`
	KID       string `json:"kid"`
	Alg       string `json:"alg"`
	ExpiresAt string `json:"expires_at"`
}

// testClaims are claims the default --issuer accepts.
func testClaims(aud string) string {
	return `{"iss":"` + defaultIssuer + `","aud":"` + aud + `","sub":"alice","grant_type":"password"}`
}

// sign signs testClaims through POST /v1/sign.
func (p *keydProc) sign(t *testing.T, token string) signed {
	t.Helper()
	status, body := p.call(t, http.MethodPost, "/v1/sign", token, `{"claims":`+testClaims("ecommerce")+`,"ttl":"15m"}`)
	if status != http.StatusOK {
		t.Fatalf("sign: status %d: %s", status, body)
	}
	var s signed
	if err := json.Unmarshal(body, &s); err != nil || s.Token == "" {
		t.Fatalf("sign: %v: %s", err, body)
	}
	return s
}

// jwks returns the published kids and the ETag.
func (p *keydProc) jwks(t *testing.T) (kids []string, etag string) {
	t.Helper()
	resp, err := http.Get(p.url + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct{ Keys []struct{ KID string } }
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	for _, k := range doc.Keys {
		kids = append(kids, k.KID)
	}
	return kids, resp.Header.Get("ETag")
}

func TestRestartKeepsKeysAndTokens(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	p := startKeyd(t, dataDir, nil)

	tokens := map[string]string{}
	for _, role := range []string{"signer", "admin", "auditor"} {
		fi, err := os.Stat(filepath.Join(dataDir, "tokens", role))
		if err != nil {
			t.Fatalf("no generated %s token: %v", role, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("tokens/%s has mode %v, want 0600", role, fi.Mode().Perm())
		}
		tokens[role] = p.token(t, role)
	}
	if tokens["signer"] == tokens["admin"] || tokens["admin"] == tokens["auditor"] || tokens["signer"] == tokens["auditor"] {
		t.Error("two roles got the same generated token")
	}
	before := p.sign(t, tokens["signer"])
	kids, etag := p.jwks(t)
	if len(kids) != 1 || kids[0] != before.KID {
		t.Fatalf("JWKS kids %v, want the signing kid %s", kids, before.KID)
	}
	p.stop(t)

	p = startKeyd(t, dataDir, nil)
	kids2, etag2 := p.jwks(t)
	if fmt.Sprint(kids2) != fmt.Sprint(kids) || etag2 != etag {
		t.Errorf("after restart JWKS kids %v ETag %s, want %v %s", kids2, etag2, kids, etag)
	}
	for role, tok := range tokens {
		if got := p.token(t, role); got != tok {
			t.Errorf("the %s token changed across the restart", role)
		}
	}
	after := p.sign(t, tokens["signer"])
	if after.KID != before.KID {
		t.Errorf("after restart signed with %s, want %s", after.KID, before.KID)
	}
	for _, role := range []string{"admin", "auditor"} {
		if status, body := p.call(t, http.MethodGet, "/v1/keys", tokens[role], ""); status != http.StatusOK {
			t.Errorf("/v1/keys with the %s token after restart: %d %s", role, status, body)
		}
	}
	// The token signed before the restart still verifies with the served JWKS.
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	_, raw := p.call(t, http.MethodGet, "/.well-known/jwks.json", "", "")
	if err := os.WriteFile(jwksFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runKeyd(t, "", nil, "verify", "--jwks", jwksFile, "--issuer", defaultIssuer, "--audience", "ecommerce", before.Token); code != 0 {
		t.Errorf("keyd verify of the pre-restart token: exit %d: %s%s", code, out, errOut)
	}
}

func TestTokensFromEnvAreNotWritten(t *testing.T) {
	dataDir := t.TempDir()
	p := startKeyd(t, dataDir, []string{"KEYD_SIGNER_TOKEN=env-signer-token-0123456789abcdef0123"}, "--algorithm", "EdDSA")
	if _, err := os.Stat(filepath.Join(dataDir, "tokens", "signer")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tokens/signer exists although KEYD_SIGNER_TOKEN is set (stat: %v)", err)
	}
	for _, role := range []string{"admin", "auditor"} {
		p.token(t, role)
	}
	p.sign(t, "env-signer-token-0123456789abcdef0123")
}

// TestWeakRoleTokenIsWarned: a role token shorter than 32 characters from
// the environment starts keyd (the contract's role tokens are whatever the
// operator sets) with one warning line naming the variable, never its value.
func TestWeakRoleTokenIsWarned(t *testing.T) {
	p := startKeyd(t, t.TempDir(), []string{"KEYD_ADMIN_TOKEN=admin123"}, "--algorithm", "EdDSA")
	if code, body := p.call(t, "GET", "/v1/keys", "admin123", ""); code != 200 {
		t.Errorf("GET /v1/keys with the short admin token: %d %s, want 200", code, body)
	}
	logs := p.stderr.String()
	if !strings.Contains(logs, "weak role token: KEYD_ADMIN_TOKEN has 8 characters") || strings.Contains(logs, "admin123") {
		t.Errorf("want one warning naming KEYD_ADMIN_TOKEN, never its value; log:\n%s", logs)
	}
}

// runKeyd runs the keyd binary with stdin and env (KEYD_* assignments) and
// returns its output and exit code.
func runKeyd(t *testing.T, stdin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, keydBin, args...)
	cmd.Env = keydEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run keyd %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("keyd %v did not finish within 30s:\n%s", args, errOut.String())
	}
	return out.String(), errOut.String(), code
}

func TestBadConfigurationExits(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{
			name: "flags",
			args: []string{"--max-token-lifetime", "2h", "--algorithm", "HS256", "--jwks-max-age", "48h"},
			want: []string{"--max-token-lifetime", "--algorithm", "--jwks-max-age"},
		},
		{
			name: "environment",
			env:  []string{"KEYD_ALGORITHM=none", "KEYD_BACKEND=s3", "KEYD_ROTATION_SCHEDULE=every day"},
			want: []string{"--algorithm", "--backend", "--rotation-schedule"},
		},
		{
			name: "flags and environment",
			args: []string{"--issuer", "", "--tls-cert", "cert.pem"},
			env:  []string{"KEYD_CLOCK_SKEW=a minute", "KEYD_MAX_TOKEN_LIFETIME=24h"},
			want: []string{"--issuer", "--tls-cert", "--clock-skew", "--max-token-lifetime"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := t.TempDir()
			args := append([]string{"serve", "--listen", "127.0.0.1:" + strconv.Itoa(freePort(t)), "--data-dir", dataDir}, tt.args...)
			stdout, stderr, code := runKeyd(t, "", tt.env, args...)
			if code == 0 {
				t.Fatalf("keyd serve exited 0 with bad configuration; stderr:\n%s", stderr)
			}
			msg := strings.TrimSpace(stderr)
			if strings.Count(msg, "\n") != 0 {
				t.Errorf("want one message on one line, got:\n%s", msg)
			}
			for _, name := range tt.want {
				if !strings.Contains(msg, name) {
					t.Errorf("the message does not name %s: %s", name, msg)
				}
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "tokens")); err == nil {
				t.Error("keyd generated tokens although its configuration is bad")
			}
		})
	}
}

// jwtPart decodes the base64url JSON of one part of a compact JWS.
func jwtPart(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a compact JWS", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("part %d of the token: %v", i, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("part %d of the token: %v", i, err)
	}
	return m
}

func TestCLIClients(t *testing.T) {
	p := startKeyd(t, t.TempDir(), nil) // RS512, the default
	signerTok, adminTok := p.token(t, "signer"), p.token(t, "admin")
	server := []string{"--server", p.url}
	cli := func(t *testing.T, stdin string, env []string, args ...string) (string, string, int) {
		t.Helper()
		return runKeyd(t, stdin, env, append(args[:1:1], append(server, args[1:]...)...)...)
	}

	var kid string
	t.Run("sign", func(t *testing.T) {
		for name, run := range map[string]func() (string, string, int){
			"--token": func() (string, string, int) {
				return cli(t, testClaims("notes"), nil, "sign", "--token", signerTok, "--ttl", "15m")
			},
			"KEYD_TOKEN": func() (string, string, int) {
				return cli(t, testClaims("notes"), []string{"KEYD_TOKEN=" + signerTok}, "sign", "--ttl", "15m")
			},
		} {
			out, errOut, code := run()
			if code != 0 {
				t.Fatalf("%s: keyd sign: exit %d: %s", name, code, errOut)
			}
			if strings.Count(out, "\n") != 1 {
				t.Errorf("%s: keyd sign printed %q, want one line with the token", name, out)
			}
			claims := jwtPart(t, out, 1)
			if claims["aud"] != "notes" || claims["sub"] != "alice" || claims["exp"].(float64)-claims["iat"].(float64) != 900 {
				t.Errorf("%s: claims %v, want aud notes, sub alice and a 15m lifetime", name, claims)
			}
			kid, _ = jwtPart(t, out, 0)["kid"].(string)
		}
		_, errOut, code := cli(t, `{"iss":"https://evil.example","aud":"a","sub":"s","grant_type":"password"}`, nil, "sign", "--token", signerTok)
		if code != 1 || !strings.Contains(errOut, "issuer_not_allowed") || !strings.Contains(errOut, "accepted: "+defaultIssuer) {
			t.Errorf("keyd sign with a foreign iss: exit %d, stderr %q; want 1 naming issuer_not_allowed and the accepted issuers", code, errOut)
		}
	})

	t.Run("keys", func(t *testing.T) {
		out, errOut, code := cli(t, "", nil, "keys", "--token", adminTok)
		if code != 0 {
			t.Fatalf("keyd keys: exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "VERSION") || !strings.Contains(lines[1], "active") || !strings.Contains(lines[1], kid) {
			t.Errorf("keyd keys printed:\n%s\nwant a header and one active row with kid %s", out, kid)
		}
	})

	t.Run("jwks", func(t *testing.T) {
		for _, format := range []string{"", "jwks", "edx"} {
			args := []string{"jwks"}
			if format != "" {
				args = append(args, "--format", format)
			}
			out, errOut, code := cli(t, "", nil, args...)
			if code != 0 {
				t.Fatalf("keyd %v: exit %d: %s", args, code, errOut)
			}
			var doc struct {
				Keys []struct{ KID, Kty, N, E, D string }
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("keyd %v printed something that is not JSON: %v\n%s", args, err, out)
			}
			if len(doc.Keys) != 1 || doc.Keys[0].KID != kid || doc.Keys[0].Kty != "RSA" || doc.Keys[0].N == "" || doc.Keys[0].E == "" || doc.Keys[0].D != "" {
				t.Errorf("keyd %v printed %s, want the public RSA key %s", args, out, kid)
			}
		}
	})

	t.Run("rotate", func(t *testing.T) {
		_, errOut, code := cli(t, "", nil, "rotate", "--token", signerTok)
		if code != 1 || !strings.Contains(errOut, "does not hold the role") || !strings.Contains(errOut, "403") {
			t.Errorf("keyd rotate with the signer token: exit %d, stderr %q; want 1 and a 403 message", code, errOut)
		}
		out, errOut, code := cli(t, "", nil, "rotate", "--token", adminTok, "--json")
		if code != 0 {
			t.Fatalf("keyd rotate with the admin token: exit %d: %s", code, errOut)
		}
		var got struct {
			KID     string
			Version int
			State   string
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.Version != 2 || got.State != "pending" {
			t.Errorf("keyd rotate printed %q, want a pending version 2", out)
		}
		_, errOut, code = cli(t, "", nil, "rotate", "--emergency", "--token", adminTok)
		if code == 0 || !strings.Contains(errOut, "--reason") {
			t.Errorf("keyd rotate --emergency without --reason: exit %d, stderr %q", code, errOut)
		}
	})
}

// pyjwtInterop verifies a token with PyJWT through the JWKS URL and computes
// the RFC 7638 thumbprint of the token's key on its own.
const pyjwtInterop = `
import base64, hashlib, json, sys, urllib.request
import jwt
url, token, alg, aud, iss = sys.argv[1:6]
key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=[alg], audience=aud, issuer=iss)
kid = jwt.get_unverified_header(token)["kid"]
jwks = json.load(urllib.request.urlopen(url))
jwk = [k for k in jwks["keys"] if k["kid"] == kid][0]
required = {"RSA": ["e", "kty", "n"], "EC": ["crv", "kty", "x", "y"], "OKP": ["crv", "kty", "x"]}[jwk["kty"]]
canonical = json.dumps({m: jwk[m] for m in required}, separators=(",", ":"), sort_keys=True)
thumbprint = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
print(json.dumps({"claims": claims, "kid": kid, "thumbprint": thumbprint, "jwk_alg": jwk.get("alg")}))
`

const python = "/usr/bin/python3"

// needPyJWT skips without PyJWT, except in CI where it must be installed.
func needPyJWT(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import jwt, cryptography").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("PyJWT is not available (%v: %s); install Debian's python3-jwt", err, bytes.TrimSpace(out))
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func TestPyJWTInterop(t *testing.T) {
	needPyJWT(t)
	for _, alg := range []string{"RS512", "RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			p := startKeyd(t, t.TempDir(), nil, "--algorithm", alg)
			s := p.sign(t, p.token(t, "signer"))
			if s.Alg != alg {
				t.Fatalf("signed with %s, want %s", s.Alg, alg)
			}
			cmd := exec.Command(python, "-c", pyjwtInterop, p.url+"/.well-known/jwks.json", s.Token, alg, "ecommerce", defaultIssuer)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("PyJWT refused the %s token: %v\n%s", alg, err, stderr.String())
			}
			var got struct {
				Claims     map[string]any
				KID        string
				Thumbprint string
				JWKAlg     string `json:"jwk_alg"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("python output %q: %v", out, err)
			}
			if got.KID != s.KID || got.Thumbprint != s.KID {
				t.Errorf("kid %s, PyJWT-side thumbprint %s; want both %s", got.KID, got.Thumbprint, s.KID)
			}
			if got.JWKAlg != alg {
				t.Errorf("JWKS alg = %q, want %s", got.JWKAlg, alg)
			}
			if got.Claims["sub"] != "alice" || got.Claims["grant_type"] != "password" || got.Claims["iss"] != defaultIssuer {
				t.Errorf("PyJWT decoded claims %v", got.Claims)
			}
		})
	}
}
