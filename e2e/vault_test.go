package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/openedx-keyd/keyd/internal/testkeyd"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
)

// vaultEnv is a bootstrapped Vault with one token per role.
type vaultEnv struct {
	v                                *vaulttest.Server
	server, lms, admin, auditor, ida string
}

// bootstrapVault starts a dev Vault, runs `keyd bootstrap` with its root
// token and creates the role tokens.
func bootstrapVault(t *testing.T, alg string) *vaultEnv {
	t.Helper()
	v := vaulttest.Start(t)
	if out, err := keydVault(v.Addr, v.RootToken, "bootstrap", "--algorithm", alg); err != nil {
		t.Fatalf("keyd bootstrap: %v\n%s", err, out)
	}
	return &vaultEnv{
		v:       v,
		server:  v.Token(t, "keyd-server"),
		lms:     v.Token(t, "keyd-lms-signer"),
		admin:   v.Token(t, "keyd-admin"),
		auditor: v.Token(t, "keyd-auditor"),
		ida:     v.Token(t),
	}
}

// startVaultKeyd runs keyd in Vault mode against addr (Vault or a proxy).
func (e *vaultEnv) start(t *testing.T, addr string, args ...string) *testkeyd.Keyd {
	t.Helper()
	return startKeyd(t, []string{"VAULT_ADDR=" + addr, "VAULT_TOKEN=" + e.server}, append([]string{"--backend", "vault"}, args...)...)
}

func latestVersion(t *testing.T, e *vaultEnv) int {
	t.Helper()
	sec, err := e.v.Client(t, e.v.RootToken).Logical().Read("transit/keys/keyd-jwt")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := sec.Data["latest_version"].(json.Number).Int64()
	return int(n)
}

func TestLifecycleVaultTwoReplicas(t *testing.T) {
	e := bootstrapVault(t, "ES256")
	args := append([]string{"--algorithm", "ES256"}, fastLifecycle...)
	k1 := e.start(t, e.v.Addr, args...)
	k2 := e.start(t, e.v.Addr, args...)
	start := time.Now()
	runLifecycle(t, []string{k1.URL, k2.URL}, e.lms, e.auditor, 30*time.Second)

	// One new version per scheduled rotation, not one per replica.
	elapsed := time.Since(start)
	got, most := latestVersion(t, e), int(elapsed/(3*time.Second))+2
	if got > most {
		t.Errorf("two replicas made %d versions in %v of rotations every 3s; at most %d expected", got, elapsed.Round(time.Second), most)
	}
	// Both replicas publish the same keys.
	var a, b jose.JSONWebKeySet
	waitUntil(t, 5*time.Second, "both replicas publish the same keys", func() bool {
		a, b = jose.JSONWebKeySet{}, jose.JSONWebKeySet{}
		call(context.Background(), "GET", k1.URL+"/.well-known/jwks.json", "", nil, &a)
		call(context.Background(), "GET", k2.URL+"/.well-known/jwks.json", "", nil, &b)
		return kids(a) == kids(b)
	})
	out, err := auditVerifyVault(e)
	if err != nil {
		t.Errorf("keyd audit verify --vault after the lifecycle run: %v\n%s", err, out)
	}
}

func kids(s jose.JSONWebKeySet) string {
	var ids []string
	for _, k := range s.Keys {
		ids = append(ids, k.KeyID)
	}
	return strings.Join(ids, ",")
}

func auditVerifyVault(e *vaultEnv) ([]byte, error) {
	return keydVault(e.v.Addr, e.auditor, "audit", "verify", "--vault")
}

// keydVault runs keyd with args against the Vault at addr with token
// (VAULT_ADDR, VAULT_TOKEN), and returns its combined output.
func keydVault(addr, token string, args ...string) ([]byte, error) {
	cmd := exec.Command(keydBin, args...)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+addr, "VAULT_TOKEN="+token)
	return cmd.CombinedOutput()
}

var testClaims = map[string]any{"claims": map[string]any{
	"iss": "http://localhost:18000/oauth2", "aud": "openedx", "sub": "anon-1", "grant_type": "password",
}}

func TestVaultOutage(t *testing.T) {
	e := bootstrapVault(t, "RS512")
	proxy := vaulttest.NewProxy(t, e.v.Addr)
	k := e.start(t, proxy.Addr(), "--algorithm", "RS512")
	ctx := context.Background()
	if _, err := call(ctx, "POST", k.URL+"/v1/sign", e.lms, testClaims, nil); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	began := time.Now()
	status, err := call(ctx, "POST", k.URL+"/v1/sign", e.lms, testClaims, nil)
	if took := time.Since(began); status != http.StatusServiceUnavailable || took > 1500*time.Millisecond {
		t.Errorf("sign with Vault cut: %d after %v (%v); want 503 within a second", status, took, err)
	}
	if err == nil || !strings.Contains(err.Error(), `"backend_unavailable"`) || !strings.Contains(err.Error(), "Vault at "+proxy.Addr()) ||
		!strings.Contains(err.Error(), "/readyz") {
		t.Errorf("the 503 does not name Vault at %s and point at /readyz: %v", proxy.Addr(), err)
	}
	// The JWKS keeps being served and readiness holds, while the body says
	// the backend is down (after one snapshot refresh: 10s by default).
	var ready struct {
		Ready     bool
		Lifecycle struct {
			BackendUp bool `json:"backend_up"`
		}
	}
	waitUntil(t, 15*time.Second, "readyz reports the backend down", func() bool {
		ready.Lifecycle.BackendUp = true
		status, err = call(ctx, "GET", k.URL+"/readyz", "", nil, &ready)
		return status != 200 || !ready.Lifecycle.BackendUp
	})
	if status != 200 || !ready.Ready || ready.Lifecycle.BackendUp {
		t.Errorf("readyz during the outage: %d %+v %v; want 200, ready, backend down", status, ready, err)
	}
	if status, err := call(ctx, "GET", k.URL+"/.well-known/jwks.json", "", nil, nil); status != 200 {
		t.Errorf("JWKS during the outage: %d %v", status, err)
	}
	proxy.Restore()
	waitUntil(t, 5*time.Second, "signing recovers after Vault came back", func() bool {
		_, err := call(ctx, "POST", k.URL+"/v1/sign", e.lms, testClaims, nil)
		return err == nil
	})
}

func TestVaultRolesOverHTTP(t *testing.T) {
	e := bootstrapVault(t, "EdDSA")
	k := e.start(t, e.v.Addr, "--algorithm", "EdDSA")
	ctx := context.Background()
	checks := []struct {
		what, method, path, token string
		body                      any
		want                      int
	}{
		{"LMS signs", "POST", "/v1/sign", e.lms, testClaims, 200},
		{"an IDA's token cannot sign", "POST", "/v1/sign", e.ida, testClaims, 403},
		{"keyd's own token cannot sign", "POST", "/v1/sign", e.server, testClaims, 403},
		{"admin cannot sign", "POST", "/v1/sign", e.admin, testClaims, 403},
		{"auditor cannot sign", "POST", "/v1/sign", e.auditor, testClaims, 403},
		{"unknown token", "POST", "/v1/sign", "hvs.not-a-token", testClaims, 401},
		{"auditor lists keys", "GET", "/v1/keys", e.auditor, nil, 200},
		{"admin lists keys", "GET", "/v1/keys", e.admin, nil, 200},
		{"LMS cannot list keys", "GET", "/v1/keys", e.lms, nil, 403},
		{"auditor reads the audit", "GET", "/v1/audit", e.auditor, nil, 200},
		{"admin cannot read the audit", "GET", "/v1/audit", e.admin, nil, 403},
		{"LMS cannot read the audit", "GET", "/v1/audit", e.lms, nil, 403},
		{"auditor cannot rotate", "POST", "/v1/rotate", e.auditor, map[string]any{}, 403},
		{"LMS cannot rotate", "POST", "/v1/rotate", e.lms, map[string]any{}, 403},
		{"admin rotates", "POST", "/v1/rotate", e.admin, map[string]any{"reason": "test"}, 200},
		{"admin emergency", "POST", "/v1/rotate", e.admin, map[string]any{"emergency": true, "reason": "drill"}, 200},
		{"LMS signs with the emergency key", "POST", "/v1/sign", e.lms, testClaims, 200},
	}
	for _, c := range checks {
		if got, err := call(ctx, c.method, k.URL+c.path, c.token, c.body, nil); got != c.want {
			t.Errorf("%s: %s %s = %d (%v), want %d", c.what, c.method, c.path, got, err, c.want)
		}
	}
	// A 403 names the role by its Vault policy.
	for _, c := range []struct{ method, path, token, want string }{
		{"POST", "/v1/sign", e.ida, "signer (a Vault token of policy keyd-lms-signer)"},
		{"GET", "/v1/audit", e.lms, "auditor (a Vault token of policy keyd-auditor)"},
	} {
		var body any
		if c.method == "POST" {
			body = testClaims
		}
		if _, err := call(ctx, c.method, k.URL+c.path, c.token, body, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("403 of %s %s: %v; want it to name %s", c.method, c.path, err, c.want)
		}
	}
	if out, err := auditVerifyVault(e); err != nil {
		t.Errorf("keyd audit verify --vault: %v\n%s", err, out)
	}
	var audit struct {
		Events []struct {
			Type, Actor string
		}
		ChainValid bool `json:"chain_valid"`
	}
	if _, err := call(ctx, "GET", k.URL+"/v1/audit", e.auditor, nil, &audit); err != nil || !audit.ChainValid {
		t.Fatalf("audit: %v valid=%v", err, audit.ChainValid)
	}
	types := map[string]int{}
	for _, ev := range audit.Events {
		types[ev.Type]++
		if strings.Contains(ev.Actor, e.admin) {
			t.Errorf("an audit actor contains the admin's token: %q", ev.Actor)
		}
	}
	if types["bootstrap"] != 1 || types["created"] != 1 || types["emergency"] != 1 || types["destroyed"] != 2 {
		t.Errorf("audit event counts: %v", types)
	}
}

func TestVaultRefusesASignCapableToken(t *testing.T) {
	e := bootstrapVault(t, "RS256")
	out, err := keydVault(e.v.Addr, e.v.RootToken, "serve", "--backend", "vault", "--listen", testkeyd.FreeAddr(t))
	if err == nil || !strings.Contains(string(out), "can sign") {
		t.Fatalf("keyd started with a root token: %v\n%s", err, out)
	}
}

func TestVaultRefusesAnAlgorithmTheKeyCannotSign(t *testing.T) {
	e := bootstrapVault(t, "ES256")
	out, err := keydVault(e.v.Addr, e.server, "serve", "--backend", "vault", "--algorithm", "RS512", "--listen", testkeyd.FreeAddr(t))
	if err == nil || !strings.Contains(string(out), "ecdsa-p256") {
		t.Fatalf("keyd started with RS512 on an ecdsa-p256 key: %v\n%s", err, out)
	}
}

func TestKeydServerCannotRewriteTheAuditChain(t *testing.T) {
	e := bootstrapVault(t, "ES256")
	k := e.start(t, e.v.Addr, "--algorithm", "ES256")
	if _, err := call(context.Background(), "POST", k.URL+"/v1/rotate", e.admin, map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	c := e.v.Client(t, e.server)
	entry := "keyd/data/audit/000000000001"
	if _, err := c.Logical().Read(entry); err != nil {
		t.Fatalf("keyd-server cannot read its own chain: %v", err)
	}
	if _, err := c.Logical().Write(entry, map[string]any{"data": map[string]any{"type": "forged"}}); err == nil {
		t.Error("keyd-server overwrote an audit entry")
	}
	if _, err := c.Logical().Delete(entry); err == nil {
		t.Error("keyd-server deleted an audit entry")
	}
	if _, err := c.Logical().Delete("keyd/metadata/audit/000000000001"); err == nil {
		t.Error("keyd-server destroyed an audit entry's history")
	}
	if out, err := auditVerifyVault(e); err != nil {
		t.Errorf("chain after the attempts: %v\n%s", err, out)
	}
}
