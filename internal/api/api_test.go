package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/jwks"
	"github.com/openedx-keyd/keyd/internal/propagation"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/server"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

const (
	issuer     = "https://lms.example.com/oauth2"
	signerTok  = "test-signer-token"
	adminTok   = "test-admin-token"
	auditorTok = "test-auditor-token"
)

// now is the fake clock's time when each test starts.
var now = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// switchBackend is the local backend whose Sign can be made unavailable.
type switchBackend struct {
	signer.Backend
	down        atomic.Bool
	refuseBelow atomic.Int64 // versions another replica has retired
}

func (b *switchBackend) Sign(ctx context.Context, cred signer.Credential, v int, alg signer.Algorithm, input []byte) ([]byte, error) {
	if b.down.Load() {
		return nil, fmt.Errorf("test: backend down: %w", signer.ErrUnavailable)
	}
	if int64(v) < b.refuseBelow.Load() {
		return nil, fmt.Errorf("test: version %d pinned out: %w", v, signer.ErrNoKey)
	}
	return b.Backend.Sign(ctx, cred, v, alg, input)
}

type noEvents struct{}

func (noEvents) Emit(context.Context, rotation.Event) error { return nil }

// fakeAudit answers GET /v1/audit with one event and records the since asked.
type fakeAudit struct{ since atomic.Int64 }

func (a *fakeAudit) Page(_ context.Context, since int64) ([]audit.Event, bool, error) {
	a.since.Store(since)
	return []audit.Event{{Seq: since + 1, Type: audit.Bootstrap}}, true, nil
}

type testEnv struct {
	url     string
	handler http.Handler
	clk     *clock.Fake
	mgr     *rotation.Manager
	backend *switchBackend
	audit   *fakeAudit
	jwks    *jwks.Handler
	// Observed propagation: the recorder on the JWKS route and its store.
	recorder *propagation.Recorder
	observed *local.PropagationStore
	dir      string // the data dir
}

// testConfig is the configuration newEnv serves: a monthly schedule, a 24h
// propagation delay, 1h tokens with a minute of skew (a key retires 1h2m
// after it stops signing), a 5m JWKS max-age.
func testConfig(t testing.TB, alg signer.Algorithm, dir string) *config.Config {
	t.Helper()
	sched, err := config.ParseSchedule("0 0 1 * *")
	if err != nil {
		t.Fatal(err)
	}
	return &config.Config{
		Backend: "local", DataDir: dir, Algorithm: alg,
		Schedule: sched, RotationSchedule: "0 0 1 * *",
		PropagationDelay: 24 * time.Hour, MaxTokenLifetime: time.Hour, ClockSkew: time.Minute,
		JWKSMaxAge: 5 * time.Minute, Issuers: []string{issuer},
	}
}

// newEnv serves keyd as serve builds it (server.New) over a local backend
// in a temp dir, with a fake clock and nothing running in the background;
// with tick the manager has made its first snapshot (the bootstrap key).
// opts change the configuration (e.g. expected clients) and the wiring.
func newEnv(t testing.TB, alg signer.Algorithm, tick bool, opts ...func(*config.Config, *server.Wiring)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	lb, err := local.New(dir)
	if err != nil {
		t.Fatalf("local.New: %v", err)
	}
	tokens := map[string]string{"KEYD_SIGNER_TOKEN": signerTok, "KEYD_ADMIN_TOKEN": adminTok, "KEYD_AUDITOR_TOKEN": auditorTok}
	authz, _, err := auth.LoadLocalTokens(dir, func(k string) string { return tokens[k] })
	if err != nil {
		t.Fatalf("LoadLocalTokens: %v", err)
	}
	observed, err := local.NewPropagationStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(now)
	env := &testEnv{clk: clk, backend: &switchBackend{Backend: lb}, audit: &fakeAudit{}, observed: observed, dir: dir}
	cfg := testConfig(t, alg, dir)
	w := server.Wiring{
		Backend: env.backend, Auth: authz, Events: noEvents{}, Audit: env.audit, Observed: observed,
		Describe: "the local data dir " + dir,
	}
	for _, o := range opts {
		o(cfg, &w)
	}
	s, err := server.New(cfg, w, server.Options{
		Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(), PID: 4242,
	})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if tick {
		if err := s.Manager.Tick(context.Background()); err != nil {
			t.Fatalf("first Tick: %v", err)
		}
	}
	env.mgr, env.jwks, env.recorder, env.handler = s.Manager, s.JWKS, s.Recorder, s.Handler
	srv := httptest.NewServer(env.handler)
	t.Cleanup(srv.Close)
	env.url = srv.URL
	return env
}

type result struct {
	status int
	header http.Header
	body   []byte
}

// do sends method path with token (none when empty) and body (nil for none),
// plus header pairs.
func (e *testEnv) do(t testing.TB, method, path, token string, body io.Reader, header ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: raw}
}

func (e *testEnv) get(t testing.TB, path, token string) result {
	t.Helper()
	return e.do(t, http.MethodGet, path, token, nil)
}

func (e *testEnv) post(t testing.TB, path, token, body string) result {
	t.Helper()
	return e.do(t, http.MethodPost, path, token, strings.NewReader(body), "Content-Type", "application/json")
}

// decode unmarshals a 200 JSON body.
func decode[T any](t testing.TB, r result) T {
	t.Helper()
	var v T
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body is not the expected JSON: %v: %s", err, r.body)
	}
	return v
}

// checkError checks that r is the contract's error: the status and a JSON
// body of exactly {"error": code, "message": "<one sentence>"}.
func checkError(t testing.TB, r result, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status = %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("error body is not JSON: %v: %q", err, r.body)
	}
	if len(body) != 2 {
		t.Errorf("error body has members %v, want exactly error and message", body)
	}
	if got := body["error"]; got != code {
		t.Errorf("error = %v, want %q (body %s)", got, code, r.body)
	}
	msg, ok := body["message"].(string)
	if !ok || msg == "" || !strings.HasSuffix(msg, ".") || strings.Contains(msg, "\n") {
		t.Errorf("message = %q, want one sentence", body["message"])
	}
	if status == http.StatusServiceUnavailable && r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// signBody is a sign request with the required claims plus extra members
// (given as JSON text, each starting with a comma) and an optional ttl.
func signBody(extra, ttl string) string {
	b := `{"claims":{"iss":"` + issuer + `","aud":"ecommerce","sub":"alice","grant_type":"password"` + extra + `}`
	if ttl != "" {
		b += `,"ttl":"` + ttl + `"`
	}
	return b + "}"
}

// times is `,"iat":<now+iat>,"exp":<now+exp>` in seconds.
func times(iat, exp time.Duration) string {
	return fmt.Sprintf(`,"iat":%d,"exp":%d`, now.Add(iat).Unix(), now.Add(exp).Unix())
}

func TestErrorStatuses(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	big := `{"claims":{"pad":"` + strings.Repeat("x", api.MaxBody) + `"}}`
	tests := []struct {
		name                string
		method, path, token string
		body                string
		down                bool // the backend's Sign is unavailable
		status              int
		code                string
	}{
		// 400: malformed requests.
		{"malformed JSON", "POST", "/v1/sign", signerTok, `{"claims":`, false, 400, "invalid_json"},
		{"not JSON at all", "POST", "/v1/sign", signerTok, `claims=1`, false, 400, "invalid_json"},
		{"empty body", "POST", "/v1/sign", signerTok, ``, false, 400, "invalid_json"},
		{"trailing data", "POST", "/v1/sign", signerTok, signBody("", "") + `{}`, false, 400, "invalid_json"},
		{"duplicated claim", "POST", "/v1/sign", signerTok, signBody(`,"sub":"mallory"`, ""), false, 400, "duplicate_member"},
		{"duplicated nested member", "POST", "/v1/sign", signerTok, signBody(`,"x":{"a":1,"a":2}`, ""), false, 400, "duplicate_member"},
		{"duplicated top-level member", "POST", "/v1/sign", signerTok, `{"ttl":"1m","ttl":"2m","claims":{}}`, false, 400, "duplicate_member"},
		{"iat without exp", "POST", "/v1/sign", signerTok, signBody(fmt.Sprintf(`,"iat":%d`, now.Unix()), ""), false, 400, "invalid_time_claims"},
		{"exp without iat", "POST", "/v1/sign", signerTok, signBody(fmt.Sprintf(`,"exp":%d`, now.Unix()+60), ""), false, 400, "invalid_time_claims"},
		{"iat and exp with ttl", "POST", "/v1/sign", signerTok, signBody(times(0, time.Minute), "1m"), false, 400, "invalid_time_claims"},
		{"ttl garbage", "POST", "/v1/sign", signerTok, signBody("", "soon"), false, 400, "invalid_ttl"},
		{"ttl negative", "POST", "/v1/sign", signerTok, signBody("", "-5m"), false, 400, "invalid_ttl"},
		{"ttl a number", "POST", "/v1/sign", signerTok, `{"claims":{},"ttl":900}`, false, 400, "invalid_ttl"},
		{"claims not an object", "POST", "/v1/sign", signerTok, `{"claims":["iss"]}`, false, 400, "invalid_request"},
		{"claims missing", "POST", "/v1/sign", signerTok, `{"ttl":"1m"}`, false, 400, "invalid_request"},
		{"body not an object", "POST", "/v1/sign", signerTok, `[1,2]`, false, 400, "invalid_request"},
		{"unknown request member", "POST", "/v1/sign", signerTok, `{"claims":{},"header":{"alg":"none"}}`, false, 400, "unknown_member"},
		{"rotate with unknown member", "POST", "/v1/rotate", adminTok, `{"force":true}`, false, 400, "unknown_member"},
		{"rotate with malformed JSON", "POST", "/v1/rotate", adminTok, `{"emergency":`, false, 400, "invalid_json"},
		{"rotate with trailing data", "POST", "/v1/rotate", adminTok, `{}{"emergency":true,"reason":"x"}`, false, 400, "invalid_json"},
		{"rotate body not an object", "POST", "/v1/rotate", adminTok, `[{"emergency":true}]`, false, 400, "invalid_request"},
		{"rotate emergency in another case", "POST", "/v1/rotate", adminTok, `{"emergency":false,"EMERGENCY":true,"reason":"x"}`, false, 400, "unknown_member"},
		{"rotate emergency capitalised", "POST", "/v1/rotate", adminTok, `{"Emergency":true,"reason":"x"}`, false, 400, "unknown_member"},
		{"rotate emergency twice", "POST", "/v1/rotate", adminTok, `{"emergency":false,"emergency":true,"reason":"x"}`, false, 400, "duplicate_member"},
		{"rotate reason twice", "POST", "/v1/rotate", adminTok, `{"reason":"routine","reason":"cover-up"}`, false, 400, "duplicate_member"},
		{"rotate emergency a string", "POST", "/v1/rotate", adminTok, `{"emergency":"true","reason":"x"}`, false, 400, "invalid_request"},
		{"rotate emergency null", "POST", "/v1/rotate", adminTok, `{"emergency":null}`, false, 400, "invalid_request"},
		{"rotate reason a number", "POST", "/v1/rotate", adminTok, `{"reason":7}`, false, 400, "invalid_request"},
		{"rotate invalid UTF-8", "POST", "/v1/rotate", adminTok, "{\"reason\":\"\xff\"}", false, 400, "invalid_json"},
		{"rotate emergency without reason", "POST", "/v1/rotate", adminTok, `{"emergency":true}`, false, 400, "reason_required"},
		{"rotate emergency with blank reason", "POST", "/v1/rotate", adminTok, `{"emergency":true,"reason":"  "}`, false, 400, "reason_required"},
		{"audit since -1", "GET", "/v1/audit?since=-1", auditorTok, "", false, 400, "bad_since"},
		{"audit since abc", "GET", "/v1/audit?since=abc", auditorTok, "", false, 400, "bad_since"},

		// 401: no or unknown credential.
		{"sign without header", "POST", "/v1/sign", "", signBody("", ""), false, 401, "unauthenticated"},
		{"keys without header", "GET", "/v1/keys", "", "", false, 401, "unauthenticated"},
		{"rotate without header", "POST", "/v1/rotate", "", "", false, 401, "unauthenticated"},
		{"audit without header", "GET", "/v1/audit", "", "", false, 401, "unauthenticated"},
		{"unknown token", "POST", "/v1/sign", "not-a-token", signBody("", ""), false, 401, "unauthenticated"},
		{"token of another deployment", "GET", "/v1/keys", signerTok + "x", "", false, 401, "unauthenticated"},

		// 403: a valid credential without the role.
		{"auditor signing", "POST", "/v1/sign", auditorTok, signBody("", ""), false, 403, "forbidden"},
		{"admin signing", "POST", "/v1/sign", adminTok, signBody("", ""), false, 403, "forbidden"},
		{"signer reading keys", "GET", "/v1/keys", signerTok, "", false, 403, "forbidden"},
		{"signer rotating", "POST", "/v1/rotate", signerTok, "", false, 403, "forbidden"},
		{"auditor rotating", "POST", "/v1/rotate", auditorTok, "", false, 403, "forbidden"},
		{"admin reading audit", "GET", "/v1/audit", adminTok, "", false, 403, "forbidden"},
		{"signer reading audit", "GET", "/v1/audit", signerTok, "", false, 403, "forbidden"},

		// 404 and 405, as JSON.
		{"unknown route", "GET", "/v1/nope", "", "", false, 404, "not_found"},
		{"unknown route with a token", "POST", "/v2/sign", signerTok, signBody("", ""), false, 404, "not_found"},
		{"GET on sign", "GET", "/v1/sign", signerTok, "", false, 405, "method_not_allowed"},
		{"DELETE on keys", "DELETE", "/v1/keys", adminTok, "", false, 405, "method_not_allowed"},
		{"POST on jwks", "POST", "/.well-known/jwks.json", "", "{}", false, 405, "method_not_allowed"},

		// 413: over 64 KiB (sent with Content-Length here; chunked below).
		{"sign body over 64 KiB", "POST", "/v1/sign", signerTok, big, false, 413, "body_too_large"},
		{"rotate body over 64 KiB", "POST", "/v1/rotate", adminTok, big, false, 413, "body_too_large"},

		// 422: claims that break the token policy.
		{"missing grant_type", "POST", "/v1/sign", signerTok, `{"claims":{"iss":"` + issuer + `","aud":"a","sub":"alice"}}`, false, 422, "invalid_claim"},
		{"grant_type a number", "POST", "/v1/sign", signerTok, `{"claims":{"iss":"` + issuer + `","aud":"a","sub":"alice","grant_type":7}}`, false, 422, "invalid_claim"},
		{"grant_type not a string", "POST", "/v1/sign", signerTok, `{"claims":{"iss":"` + issuer + `","aud":"a","sub":"alice","grant_type":1}}`, false, 422, "invalid_claim"},
		{"missing sub", "POST", "/v1/sign", signerTok, `{"claims":{"iss":"` + issuer + `","aud":"a","grant_type":"password"}}`, false, 422, "invalid_claim"},
		{"missing aud", "POST", "/v1/sign", signerTok, `{"claims":{"iss":"` + issuer + `","sub":"alice","grant_type":"password"}}`, false, 422, "invalid_claim"},
		{"missing iss", "POST", "/v1/sign", signerTok, `{"claims":{"aud":"a","sub":"alice","grant_type":"password"}}`, false, 422, "invalid_claim"},
		{"foreign iss", "POST", "/v1/sign", signerTok, `{"claims":{"iss":"https://evil.example/oauth2","aud":"a","sub":"alice","grant_type":"password"}}`, false, 422, "issuer_not_allowed"},
		{"lifetime 2h", "POST", "/v1/sign", signerTok, signBody(times(0, 2*time.Hour), ""), false, 422, "lifetime_too_long"},
		{"ttl 10h", "POST", "/v1/sign", signerTok, signBody("", "10h"), false, 422, "lifetime_too_long"},
		{"ttl just above 1h", "POST", "/v1/sign", signerTok, signBody("", "1h0m1s"), false, 422, "lifetime_too_long"},
		{"exp in the past", "POST", "/v1/sign", signerTok, signBody(times(-10*time.Minute, -time.Minute), ""), false, 422, "token_expired"},
		{"exp now", "POST", "/v1/sign", signerTok, signBody(times(-10*time.Minute, 0), ""), false, 422, "token_expired"},
		{"iat in the future", "POST", "/v1/sign", signerTok, signBody(times(10*time.Minute, 20*time.Minute), ""), false, 422, "iat_in_future"},

		// 503: the backend cannot sign.
		{"backend unavailable", "POST", "/v1/sign", signerTok, signBody("", "15m"), true, 503, "backend_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.backend.down.Store(tt.down)
			defer e.backend.down.Store(false)
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			checkError(t, e.do(t, tt.method, tt.path, tt.token, body, "Content-Type", "application/json"), tt.status, tt.code)
		})
	}
}

// TestEmptyGrantTypeSigned: the LMS writes "grant_type": "" for tokens not
// issued through an OAuth grant (create_jwt_for_user); keyd signs them as
// they are and the session exchange, not keyd, refuses them.
func TestEmptyGrantTypeSigned(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	r := e.do(t, http.MethodPost, "/v1/sign", signerTok,
		strings.NewReader(`{"claims":{"iss":"`+issuer+`","aud":"a","sub":"alice","grant_type":""}}`),
		"Content-Type", "application/json")
	if r.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %s)", r.status, r.body)
	}
	var resp struct{ Token string }
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(resp.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", resp.Token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if gt, ok := claims["grant_type"]; !ok || gt != "" {
		t.Errorf("grant_type = %#v (present %v), want the empty string", gt, ok)
	}
}

func TestWrongScheme(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	for _, h := range []string{
		"Basic " + base64.StdEncoding.EncodeToString([]byte("signer:"+signerTok)),
		"Token " + signerTok,
		signerTok,
		"Bearer",
		"Bearer    ",
	} {
		r := e.do(t, http.MethodPost, "/v1/sign", "", strings.NewReader(signBody("", "")), "Authorization", h)
		checkError(t, r, http.StatusUnauthorized, "unauthenticated")
	}
}

// unsized hides the length of a body, so the client sends it chunked.
type unsized struct{ io.Reader }

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	// A valid request padded with white space to exactly n bytes.
	padded := func(n int) string {
		b := signBody("", "")
		return b[:len(b)-1] + strings.Repeat(" ", n-len(b)) + "}"
	}
	tests := []struct {
		name    string
		size    int
		chunked bool
		status  int
	}{
		{"64 KiB exactly", api.MaxBody, false, 200},
		{"64 KiB exactly, chunked", api.MaxBody, true, 200},
		{"one byte over", api.MaxBody + 1, false, 413},
		{"one byte over, chunked", api.MaxBody + 1, true, 413},
		{"200 KiB", 200 << 10, false, 413},
		{"200 KiB, chunked", 200 << 10, true, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(padded(tt.size))
			if tt.chunked {
				body = unsized{body}
			}
			req, err := http.NewRequest(http.MethodPost, e.url+"/v1/sign", body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+signerTok)
			req.Header.Set("Content-Type", "application/json")
			if tt.chunked != (req.ContentLength == 0) {
				t.Fatalf("ContentLength = %d: the body would not be sent as intended", req.ContentLength)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := result{status: resp.StatusCode, header: resp.Header, body: raw}
			if tt.status == 413 {
				checkError(t, r, 413, "body_too_large")
			} else if r.status != tt.status {
				t.Errorf("status = %d, want %d: %s", r.status, tt.status, r.body)
			}
		})
	}
}

func TestNoActiveKeyYet(t *testing.T) {
	e := newEnv(t, signer.ES256, false)
	checkError(t, e.post(t, "/v1/sign", signerTok, signBody("", "")), 503, "no_active_key")
}

type signResponse struct {
	Token     string `json:"token"`
	KID       string `json:"kid"`
	Alg       string `json:"alg"`
	ExpiresAt string `json:"expires_at"`
}

func TestSign(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	// The caller's claims pass through; alg/kid/typ claims do not reach the header.
	r := e.post(t, "/v1/sign", signerTok, signBody(`,"alg":"none","kid":"evil","typ":"x","extra":{"n":[1,2.5,"three"]}`, "15m"))
	got := decode[signResponse](t, r)
	snap := e.mgr.Snapshot()
	if got.KID != snap.Signing.KID || got.Alg != "ES256" {
		t.Errorf("kid, alg = %s, %s; want %s, ES256", got.KID, got.Alg, snap.Signing.KID)
	}
	if want := now.Add(15 * time.Minute).Format(time.RFC3339); got.ExpiresAt != want {
		t.Errorf("expires_at = %s, want %s", got.ExpiresAt, want)
	}

	parts := strings.Split(got.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", got.Token)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if want := `{"alg":"ES256","kid":"` + got.KID + `","typ":"JWT"}`; string(hdr) != want {
		t.Errorf("header = %s, want %s", hdr, want)
	}

	// Verify with the published JWKS, as a verifier would.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(e.get(t, "/.well-known/jwks.json", "").body, &set); err != nil {
		t.Fatal(err)
	}
	keys := set.Key(got.KID)
	if len(keys) != 1 {
		t.Fatalf("the JWKS has %d keys with kid %s, want 1", len(keys), got.KID)
	}
	jws, err := jose.ParseSignedCompact(got.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("the token does not verify with the JWKS key: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"iss": issuer, "aud": "ecommerce", "sub": "alice", "grant_type": "password",
		"alg": "none", "kid": "evil", "typ": "x", "extra": map[string]any{"n": []any{1.0, 2.5, "three"}},
		"iat": float64(now.Unix()), "exp": float64(now.Add(15 * time.Minute).Unix()),
	}
	jti, _ := c["jti"].(string)
	if raw, err := base64.RawURLEncoding.DecodeString(jti); err != nil || len(raw) != 16 {
		t.Errorf("jti = %q, want 128 random bits in base64url", c["jti"])
	}
	delete(c, "jti")
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("claims =\n %v\nwant\n %v", c, want)
	}

	// Defaults: no ttl is the maximum lifetime; a caller's jti is kept.
	got = decode[signResponse](t, e.post(t, "/v1/sign", signerTok, signBody(`,"jti":"mine"`, "")))
	if want := now.Add(time.Hour).Format(time.RFC3339); got.ExpiresAt != want {
		t.Errorf("expires_at without ttl = %s, want %s", got.ExpiresAt, want)
	}
	payload, _ = base64.RawURLEncoding.DecodeString(strings.Split(got.Token, ".")[1])
	if !strings.Contains(string(payload), `"jti":"mine"`) {
		t.Errorf("payload %s lost the caller's jti", payload)
	}

	// Caller-given iat and exp within the policy.
	got = decode[signResponse](t, e.post(t, "/v1/sign", signerTok, signBody(times(-time.Minute, 30*time.Minute), "")))
	if want := now.Add(30 * time.Minute).Format(time.RFC3339); got.ExpiresAt != want {
		t.Errorf("expires_at with exp = %s, want %s", got.ExpiresAt, want)
	}
}

func TestJWKS(t *testing.T) {
	for _, alg := range signer.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			e := newEnv(t, alg, true)
			r := e.get(t, "/.well-known/jwks.json", "")
			if r.status != http.StatusOK {
				t.Fatalf("GET status %d: %s", r.status, r.body)
			}
			etag := r.header.Get("ETag")
			if !regexp.MustCompile(`^"[A-Za-z0-9_-]+"$`).MatchString(etag) {
				t.Errorf("ETag %q is not a strong entity tag", etag)
			}
			if cc := r.header.Get("Cache-Control"); cc != "public, max-age=300" {
				t.Errorf("Cache-Control = %q, want public, max-age=300", cc)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}

			var doc struct{ Keys []map[string]any }
			if err := json.Unmarshal(r.body, &doc); err != nil {
				t.Fatal(err)
			}
			if len(doc.Keys) != 1 {
				t.Fatalf("JWKS has %d keys, want 1: %s", len(doc.Keys), r.body)
			}
			jwk := doc.Keys[0]
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
				if _, ok := jwk[private]; ok {
					t.Errorf("JWKS key has private member %q", private)
				}
			}
			if jwk["use"] != "sig" || jwk["alg"] != string(alg) {
				t.Errorf("use, alg = %v, %v; want sig, %s", jwk["use"], jwk["alg"], alg)
			}
			pub := e.mgr.Snapshot().Keys[0].Public
			members, canonical := thumbprintInput(t, pub)
			for name, want := range members {
				if jwk[name] != want {
					t.Errorf("JWKS member %s = %v, want %v", name, jwk[name], want)
				}
			}
			sum := sha256.Sum256([]byte(canonical))
			if want := base64.RawURLEncoding.EncodeToString(sum[:]); jwk["kid"] != want {
				t.Errorf("kid = %v, want the RFC 7638 thumbprint %s of %s", jwk["kid"], want, canonical)
			}

			// HEAD: same headers, no body.
			h := e.do(t, http.MethodHead, "/.well-known/jwks.json", "", nil)
			if h.status != http.StatusOK || len(h.body) != 0 || h.header.Get("ETag") != etag ||
				h.header.Get("Cache-Control") != "public, max-age=300" {
				t.Errorf("HEAD: status %d, %d body bytes, ETag %q, Cache-Control %q", h.status, len(h.body), h.header.Get("ETag"), h.header.Get("Cache-Control"))
			}

			// If-None-Match.
			for _, inm := range []string{etag, `"other", ` + etag, "W/" + etag, "*"} {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					r := e.do(t, method, "/.well-known/jwks.json", "", nil, "If-None-Match", inm)
					if r.status != http.StatusNotModified || len(r.body) != 0 || r.header.Get("ETag") != etag {
						t.Errorf("%s If-None-Match %s: status %d, %d body bytes, ETag %q; want 304, empty, %s", method, inm, r.status, len(r.body), r.header.Get("ETag"), etag)
					}
				}
			}
			if r := e.do(t, http.MethodGet, "/.well-known/jwks.json", "", nil, "If-None-Match", `"stale"`); r.status != http.StatusOK || len(r.body) == 0 {
				t.Errorf("If-None-Match with a stale ETag: status %d, want 200 with the JWKS", r.status)
			}
		})
	}
}

// thumbprintInput returns the public members of pub as JWK strings and the
// RFC 7638 canonical JSON of its required members, built by hand.
func thumbprintInput(t *testing.T, pub any) (map[string]string, string) {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		n, e := b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
		return map[string]string{"kty": "RSA", "n": n, "e": e},
			`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`
	case *ecdsa.PublicKey:
		ek, err := k.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		point := ek.Bytes() // 0x04 || X || Y, 32 bytes each for P-256
		x, y := b64(point[1:33]), b64(point[33:])
		return map[string]string{"kty": "EC", "crv": "P-256", "x": x, "y": y},
			`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`
	case ed25519.PublicKey:
		x := b64(k)
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "x": x},
			`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`
	}
	t.Fatalf("unexpected public key %T", pub)
	return nil, ""
}

func TestJWKSBeforeFirstSnapshot(t *testing.T) {
	e := newEnv(t, signer.ES256, false)
	if r := e.get(t, "/.well-known/jwks.json", ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("JWKS before any snapshot: status %d, want 503", r.status)
	}
}

type keysResponse struct {
	Keys []struct {
		KID         string  `json:"kid"`
		Version     int     `json:"version"`
		State       string  `json:"state"`
		CreatedAt   string  `json:"created_at"`
		ActivatesAt string  `json:"activates_at"`
		RetiresAt   *string `json:"retires_at"`
	} `json:"keys"`
}

type rotateResponse struct {
	KID     string `json:"kid"`
	Version int    `json:"version"`
	State   string `json:"state"`
}

// keyRows lists /v1/keys as one line per key: version, state and times.
func keyRows(t *testing.T, e *testEnv, token string) []string {
	t.Helper()
	r := e.get(t, "/v1/keys", token)
	// retires_at is present (null while unknown), never omitted.
	var raw struct{ Keys []map[string]json.RawMessage }
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatalf("/v1/keys: %v: %s", err, r.body)
	}
	for _, k := range raw.Keys {
		for _, m := range []string{"kid", "version", "state", "created_at", "activates_at", "retires_at"} {
			if _, ok := k[m]; !ok {
				t.Errorf("/v1/keys entry lacks %q: %s", m, r.body)
			}
		}
	}
	var rows []string
	for _, k := range decode[keysResponse](t, r).Keys {
		retires := "null"
		if k.RetiresAt != nil {
			retires = *k.RetiresAt
		}
		if k.KID == "" {
			t.Errorf("version %d has no kid", k.Version)
		}
		rows = append(rows, fmt.Sprintf("v%d %s %s %s %s", k.Version, k.State, k.CreatedAt, k.ActivatesAt, retires))
	}
	return rows
}

func TestKeysAndRotate(t *testing.T) {
	e := newEnv(t, signer.EdDSA, true)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	checkRows := func(t *testing.T, want ...string) {
		t.Helper()
		for _, tok := range []string{auditorTok, adminTok} {
			if got := keyRows(t, e, tok); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("/v1/keys =\n %q\nwant\n %q", got, want)
			}
		}
	}
	checkRows(t, "v1 active "+ts(0)+" "+ts(0)+" null")
	etag1 := e.get(t, "/.well-known/jwks.json", "").header.Get("ETag")

	first := decode[rotateResponse](t, e.post(t, "/v1/rotate", adminTok, ""))
	if first.Version != 2 || first.State != "pending" || first.KID == "" {
		t.Fatalf("rotate = %+v, want a pending version 2", first)
	}
	again := decode[rotateResponse](t, e.post(t, "/v1/rotate", adminTok, `{"emergency":false,"reason":"again"}`))
	if again != first {
		t.Errorf("rotate while pending = %+v, want the same pending key %+v", again, first)
	}
	checkRows(t,
		"v1 active "+ts(0)+" "+ts(0)+" null",
		"v2 pending "+ts(0)+" "+ts(24*time.Hour)+" null")

	// The pending key is published at once, and the ETag changes.
	jw := e.get(t, "/.well-known/jwks.json", "")
	if jw.header.Get("ETag") == etag1 || !strings.Contains(string(jw.body), first.KID) {
		t.Errorf("after rotate the JWKS (ETag %s) does not publish %s: %s", jw.header.Get("ETag"), first.KID, jw.body)
	}
	if r := e.do(t, http.MethodGet, "/.well-known/jwks.json", "", nil, "If-None-Match", etag1); r.status != http.StatusOK {
		t.Errorf("If-None-Match with the pre-rotation ETag: status %d, want 200", r.status)
	}

	// The pending key activates after the propagation delay; the old one retires.
	e.clk.Advance(24 * time.Hour)
	if err := e.mgr.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkRows(t,
		"v1 retiring "+ts(0)+" "+ts(0)+" "+ts(24*time.Hour+time.Hour+2*time.Minute),
		"v2 active "+ts(0)+" "+ts(24*time.Hour)+" null")
	signed := decode[signResponse](t, e.post(t, "/v1/sign", signerTok, signBody("", "")))
	if signed.KID != first.KID {
		t.Errorf("signed with %s, want the activated key %s", signed.KID, first.KID)
	}

	// An emergency rotation: a new key active at once, every other gone.
	em := decode[rotateResponse](t, e.post(t, "/v1/rotate", adminTok, `{"emergency":true,"reason":"key leaked"}`))
	if em.Version != 3 || em.State != "active" {
		t.Fatalf("emergency rotate = %+v, want an active version 3", em)
	}
	checkRows(t, "v3 active "+ts(24*time.Hour)+" "+ts(24*time.Hour)+" null")
	if jw := e.get(t, "/.well-known/jwks.json", ""); strings.Contains(string(jw.body), first.KID) {
		t.Errorf("after the emergency the JWKS still publishes %s", first.KID)
	}
}

// TestRotateLooseBodiesRotateNothing: a rotate body that a proxy or a
// reviewer could read otherwise than keyd (a member twice, a name in another
// case, not sent as JSON) is refused before anything is created or destroyed.
func TestRotateLooseBodiesRotateNothing(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	before := keyRows(t, e, adminTok)
	for _, tt := range []struct{ body, contentType string }{
		{`{"emergency":false,"EMERGENCY":true,"reason":"x"}`, "application/json"},
		{`{"emergency":false,"emergency":true,"reason":"x"}`, "application/json"},
		{`{"Emergency":true,"Reason":"x"}`, "application/json"},
		{`{"emergency":true,"reason":"x"}`, "text/plain"},
		{`{"emergency":true,"reason":"x"}`, "application/x-www-form-urlencoded"},
		{`{"emergency":true,"reason":"x"}`, ""},
	} {
		r := e.do(t, http.MethodPost, "/v1/rotate", adminTok, strings.NewReader(tt.body), "Content-Type", tt.contentType)
		if r.status < 400 || r.status >= 500 {
			t.Errorf("rotate %s as %q: status %d, want a 4xx: %s", tt.body, tt.contentType, r.status, r.body)
		}
	}
	if after := keyRows(t, e, adminTok); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("refused rotate bodies changed the keys:\n %q\nwant\n %q", after, before)
	}
}

// TestBodyContentType: a body that is not empty must be application/json
// (any parameters allowed); an empty rotate body needs no Content-Type.
func TestBodyContentType(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	for _, tt := range []struct {
		name, path, token, body, contentType string
		status                               int
	}{
		{"sign as text/plain", "/v1/sign", signerTok, signBody("", ""), "text/plain", 415},
		{"sign as a form", "/v1/sign", signerTok, signBody("", ""), "application/x-www-form-urlencoded", 415},
		{"sign without Content-Type", "/v1/sign", signerTok, signBody("", ""), "", 415},
		{"sign as application/jsonp", "/v1/sign", signerTok, signBody("", ""), "application/jsonp", 415},
		{"sign with a broken Content-Type", "/v1/sign", signerTok, signBody("", ""), "application/json; =", 415},
		{"rotate as text/plain", "/v1/rotate", adminTok, `{}`, "text/plain", 415},
		{"rotate without Content-Type", "/v1/rotate", adminTok, `{"reason":"routine"}`, "", 415},
		{"sign with charset", "/v1/sign", signerTok, signBody("", ""), "application/json; charset=utf-8", 200},
		{"sign in capitals", "/v1/sign", signerTok, signBody("", ""), "Application/JSON", 200},
		{"rotate with an empty body and no Content-Type", "/v1/rotate", adminTok, "", "", 200},
		{"rotate with an empty body as text/plain", "/v1/rotate", adminTok, "", "text/plain", 200},
		{"rotate as JSON", "/v1/rotate", adminTok, `{"reason":"routine"}`, "application/json", 200},
		// Credentials are checked before the body.
		{"sign as text/plain without a token", "/v1/sign", "", signBody("", ""), "text/plain", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.contentType != "" {
				hdr = []string{"Content-Type", tt.contentType}
			}
			r := e.do(t, http.MethodPost, tt.path, tt.token, strings.NewReader(tt.body), hdr...)
			switch tt.status {
			case 200:
				if r.status != 200 {
					t.Errorf("status = %d, want 200: %s", r.status, r.body)
				}
			case 415:
				checkError(t, r, 415, "unsupported_media_type")
			default:
				checkError(t, r, tt.status, "unauthenticated")
			}
		})
	}
}

func TestAudit(t *testing.T) {
	e := newEnv(t, signer.EdDSA, true)
	got := decode[struct {
		Events     []map[string]any `json:"events"`
		ChainValid bool             `json:"chain_valid"`
	}](t, e.get(t, "/v1/audit?since=41", auditorTok))
	if !got.ChainValid || len(got.Events) != 1 || e.audit.since.Load() != 41 {
		t.Errorf("audit = %+v (since %d), want one event, chain_valid, since 41", got, e.audit.since.Load())
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t, signer.EdDSA, true)
	if r := e.get(t, "/healthz", ""); r.status != http.StatusOK {
		t.Errorf("/healthz: status %d", r.status)
	}
	ready := decode[map[string]any](t, e.get(t, "/readyz", ""))
	if ready["backend"] != "local" || ready["ready"] != true {
		t.Errorf("/readyz = %v, want ready with backend local", ready)
	}

	// Ready also while the backend cannot sign: the JWKS is still served.
	e.backend.down.Store(true)
	if r := e.get(t, "/readyz", ""); r.status != http.StatusOK {
		t.Errorf("/readyz while the backend is down: status %d, want 200", r.status)
	}

	fresh := newEnv(t, signer.EdDSA, false)
	r := fresh.get(t, "/readyz", "")
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("/readyz body before a snapshot is not JSON: %s", r.body)
	}
	if r.status != http.StatusServiceUnavailable || body["backend"] != "local" || body["ready"] != false {
		t.Errorf("/readyz before a snapshot = %d %v, want 503 naming backend local", r.status, body)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	decode[signResponse](t, e.post(t, "/v1/sign", signerTok, signBody("", "")))
	checkError(t, e.post(t, "/v1/sign", signerTok, signBody("", "10h")), 422, "lifetime_too_long")
	etag := e.get(t, "/.well-known/jwks.json", "").header.Get("ETag")
	if r := e.do(t, http.MethodGet, "/.well-known/jwks.json", "", nil, "If-None-Match", etag); r.status != 304 {
		t.Fatalf("If-None-Match: status %d", r.status)
	}
	decode[rotateResponse](t, e.post(t, "/v1/rotate", adminTok, `{}`))
	e.clk.Advance(time.Hour)
	r := e.get(t, "/metrics", "")
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: status %d", r.status)
	}
	for _, want := range []string{
		`keyd_rotations_total{outcome="created"} 1`,
		`keyd_active_key_age_seconds 3600`,
		`keyd_next_transition_seconds 82800`, // the new key activates 24h after the rotation
		`keyd_rotation_overdue 0`,
		`keyd_config_mismatch 0`,
		`keyd_backend_up 1`,
		`keyd_sign_requests_total{alg="ES256",result="ok"} 1`,
		`keyd_sign_requests_total{alg="",result="refused"} 1`,
		`keyd_jwks_requests_total{status="200"} 1`,
		`keyd_jwks_requests_total{status="304"} 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func FuzzSignRequest(f *testing.F) {
	for _, seed := range []string{
		signBody("", ""),
		signBody("", "15m"),
		signBody(times(0, 30*time.Minute), ""),
		signBody(times(0, 2*time.Hour), ""),
		signBody(`,"sub":"dup"`, ""),
		signBody(`,"aud":["a","b"],"nbf":1.5e9,"jti":"x"`, "1ns"),
		signBody(`,"iat":1e400,"exp":-0`, ""),
		signBody(`,"x":"\ud800\u0000\"\\"`, "9223372036854775807ns"),
		`{"claims":{},"ttl":"1h"}`,
		`{"claims":[]}`,
		`{"claims":{"a":` + strings.Repeat("[", 10000) + `}}`,
		`[]`, `null`, `"x"`, ``, `{`, "\xff\xfe", `{"claims":{}}  {}`,
	} {
		f.Add([]byte(seed))
	}
	e := newEnv(f, signer.ES256, true)
	allowed := map[int]bool{200: true, 400: true, 413: true, 422: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/sign", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+signerTok)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.handler.ServeHTTP(rec, req)
		r := result{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
		if !allowed[r.status] {
			t.Fatalf("body %q: status %d (%s), want 200, 400, 413 or 422", body, r.status, r.body)
		}
		if r.status == http.StatusOK {
			decode[signResponse](t, r)
			return
		}
		var eb struct{ Error, Message string }
		if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error == "" || eb.Message == "" {
			t.Fatalf("body %q: status %d with a malformed error body %s", body, r.status, r.body)
		}
	})
}

// TestSignAfterAnotherReplicaActivatedANewKey: the backend refuses the
// version this replica's snapshot still calls active (another replica has
// activated the next one and pinned signing to it); keyd re-reads the keys
// and signs with the new active key instead of failing.
func TestSignAfterAnotherReplicaActivatedANewKey(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	rot := decode[rotateResponse](t, e.post(t, "/v1/rotate", adminTok, `{}`))
	e.clk.Advance(25 * time.Hour) // version 2 is due to sign, but no tick has run here
	e.backend.refuseBelow.Store(2)
	r := e.post(t, "/v1/sign", signerTok, signBody("", ""))
	if r.status != http.StatusOK {
		t.Fatalf("sign = %d %s", r.status, r.body)
	}
	if got := decode[signResponse](t, r); got.KID != rot.KID {
		t.Fatalf("signed with kid %s, want the new active key %s", got.KID, rot.KID)
	}
	e.backend.refuseBelow.Store(3) // no key the backend accepts: 503, never a 500
	checkError(t, e.post(t, "/v1/sign", signerTok, signBody("", "")), http.StatusServiceUnavailable, "no_active_key")
}

// TestJWKSRoute: the JWKS route, served ahead of echo, answers every
// method as echo answers its own routes (Allow, 405 in the contract's error
// body), and every other request goes to echo.
func TestJWKSRoute(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	h := e.handler
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/.well-known/jwks.json", 200},
		{http.MethodHead, "/.well-known/jwks.json", 200},
		{http.MethodPost, "/.well-known/jwks.json", 405},
		{http.MethodDelete, "/.well-known/jwks.json", 405},
		{http.MethodOptions, "/.well-known/jwks.json", 204},
		{http.MethodOptions, "/healthz", 204},
		{http.MethodPost, "/healthz", 405},
		{http.MethodGet, "/healthz", 200},
		{http.MethodGet, "/nope", 404},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
		if w.Code != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, w.Code, tt.want)
		}
		if tt.want == 405 {
			checkError(t, result{status: w.Code, header: w.Header(), body: w.Body.Bytes()}, 405, "method_not_allowed")
			if tt.path == "/.well-known/jwks.json" && w.Header().Get("Allow") != "OPTIONS, GET, HEAD" {
				t.Errorf("%s %s: Allow %q", tt.method, tt.path, w.Header().Get("Allow"))
			}
		}
		if tt.path == "/.well-known/jwks.json" && tt.want == 200 && (w.Header().Get("ETag") == "" || w.Header().Get("Cache-Control") != "public, max-age=300") {
			t.Errorf("%s JWKS headers: %v", tt.method, w.Header())
		}
	}
}

// TestErrorMessagesSayWhatIsNeeded: a 403 names the role the route needs
// (as the deployment names it), a 503 backend_unavailable names the backend
// and points at /readyz; the codes stay the contract's.
func TestErrorMessagesSayWhatIsNeeded(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	message := func(r result) string {
		var body struct{ Error, Message string }
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatalf("%v: %s", err, r.body)
		}
		return body.Message
	}
	for _, tt := range []struct {
		name, method, path, token, body string
		want                            string
	}{
		{"sign", "POST", "/v1/sign", auditorTok, signBody("", ""), "role this route needs: signer."},
		{"keys", "GET", "/v1/keys", signerTok, "", "role this route needs: auditor or admin."},
		{"rotate", "POST", "/v1/rotate", auditorTok, "", "role this route needs: admin."},
		{"audit", "GET", "/v1/audit", adminTok, "", "role this route needs: auditor."},
		{"confirm", "POST", "/v1/propagation/confirm", auditorTok, `{"client":"c","version":1}`, "role this route needs: admin."},
	} {
		r := e.do(t, tt.method, tt.path, tt.token, strings.NewReader(tt.body), "Content-Type", "application/json")
		checkError(t, r, http.StatusForbidden, "forbidden")
		if msg := message(r); !strings.HasSuffix(msg, tt.want) {
			t.Errorf("%s: 403 message %q, want it to end %q", tt.name, msg, tt.want)
		}
	}

	// Vault mode names the roles by their policies.
	vaultish := newEnv(t, signer.ES256, true, func(_ *config.Config, w *server.Wiring) {
		w.RoleNames = map[auth.Role]string{auth.RoleAuditor: "auditor (policy keyd-auditor)", auth.RoleAdmin: "admin (policy keyd-admin)"}
	})
	r := vaultish.get(t, "/v1/keys", signerTok)
	checkError(t, r, http.StatusForbidden, "forbidden")
	if msg := message(r); !strings.Contains(msg, "auditor (policy keyd-auditor) or admin (policy keyd-admin)") {
		t.Errorf("403 message %q does not name the policies", msg)
	}

	e.backend.down.Store(true)
	r = e.post(t, "/v1/sign", signerTok, signBody("", "15m"))
	checkError(t, r, http.StatusServiceUnavailable, "backend_unavailable")
	if msg := message(r); !strings.Contains(msg, "the local data dir "+e.dir) || !strings.Contains(msg, "/readyz") {
		t.Errorf("503 message %q does not name the backend and /readyz", msg)
	}
}

// TestReadyzNamesTheProcess: /readyz reports the answering keyd's process
// ID, so a script that started keyd can tell it from another server on the
// port (keyd healthcheck --pid).
func TestReadyzNamesTheProcess(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	got := decode[map[string]any](t, e.get(t, "/readyz", ""))
	if got["pid"] != 4242.0 {
		t.Errorf("/readyz pid = %v, want 4242: %v", got["pid"], got)
	}
}

// TestEveryRouteOfTheRoleTableAsksForAToken: each route of auth.Routes is
// served and answers 401 without a bearer token, so the role table and the
// routes cannot drift apart.
func TestEveryRouteOfTheRoleTableAsksForAToken(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	for route := range auth.Routes {
		method, path, _ := strings.Cut(string(route), " ")
		r := e.do(t, method, path, "", nil)
		checkError(t, r, http.StatusUnauthorized, "unauthenticated")
	}
}
