package verifyecho

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/labstack/echo/v4"

	"github.com/openedx-keyd/keyd/verify"
)

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const testIssuer = "https://lms.example.com/oauth2"

// testKey is an ES256 signing key and the static key set holding its public half.
type testKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

func newKey(t *testing.T) *testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{priv: priv, kid: "lms"}
}

func (k *testKey) set(t *testing.T) verify.KeySet {
	t.Helper()
	raw, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.priv.Public(), KeyID: k.kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := verify.NewStaticKeySet(raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "aud": "openedx", "sub": "anon-1234", "preferred_username": "edx",
		"grant_type": "password", "iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(),
	}
}

func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func sign(t *testing.T, k *testKey, claims map[string]any) string {
	return signWith(t, jose.ES256, k.priv, k.kid, claims)
}

func newVerifier(t *testing.T, keys verify.KeySet) *verify.Verifier {
	t.Helper()
	v, err := verify.NewVerifier(keys, verify.Config{Issuers: []string{testIssuer}, Audience: "openedx", Now: func() time.Time { return epoch }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyMiddleware(t *testing.T) {
	key := newKey(t)
	v := newVerifier(t, key.set(t))

	e := echo.New()
	e.Use(Middleware(v))
	e.GET("/me", func(c echo.Context) error {
		claims, ok := ClaimsFrom(c)
		fromCtx, ok2 := ClaimsFromContext(c.Request().Context())
		if !ok || !ok2 || claims != fromCtx {
			return c.String(http.StatusInternalServerError, "no claims")
		}
		return c.String(http.StatusOK, claims.Username()+" "+claims.Subject)
	})

	valid := sign(t, key, claimsAt(epoch))
	expiredClaims := claimsAt(epoch)
	expiredClaims["iat"], expiredClaims["exp"] = epoch.Add(-time.Hour).Unix(), epoch.Add(-10*time.Minute).Unix()

	tests := []struct {
		name       string
		auth       string
		wantStatus int
		wantBody   string // for 200
		wantCode   string // for errors
	}{
		{"bearer", "Bearer " + valid, 200, "edx anon-1234", ""},
		{"JWT scheme", "JWT " + valid, 200, "edx anon-1234", ""},
		{"lowercase scheme", "bearer " + valid, 200, "edx anon-1234", ""},
		{"missing", "", 401, "", "missing_token"},
		{"basic", "Basic dXNlcjpwYXNz", 401, "", "missing_token"},
		{"empty bearer", "Bearer ", 401, "", "missing_token"},
		{"expired", "Bearer " + sign(t, key, expiredClaims), 401, "", "expired"},
		{"symmetric", "JWT " + signWith(t, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), key.kid, claimsAt(epoch)), 401, "", "symmetric"},
		{"garbage", "Bearer abc", 401, "", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/me", nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus == 200 {
				if rec.Body.String() != tt.wantBody {
					t.Errorf("body %q, want %q", rec.Body, tt.wantBody)
				}
				return
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q is not JSON: %v", rec.Body, err)
			}
			if body["error"] != tt.wantCode || body["message"] == "" || len(body) != 2 {
				t.Errorf("body %v, want error %q and a message", body, tt.wantCode)
			}
			if ct := rec.Header().Get("Content-Type"); ct != echo.MIMEApplicationJSON {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestVerifyMiddlewareKeysUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	keys, err := verify.NewRemoteKeySet(srv.URL, verify.RemoteConfig{})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, keys)
	e := echo.New()
	e.Use(Middleware(v))
	e.GET("/", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+sign(t, newKey(t), claimsAt(epoch)))
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503; body %s", rec.Code, rec.Body)
	}
}
