package verify

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

func TestVerifyMiddleware(t *testing.T) {
	key := newKey(t, "ES256", "lms")
	clock := newClock()
	v := newTestVerifier(t, staticSet(t, key), clock.Now)

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

	valid := sign(t, key, claimsAt(epoch), nil, false)
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
		{"expired", "Bearer " + sign(t, key, expiredClaims, nil, false), 401, "", "expired"},
		{"symmetric", "JWT " + signHMAC(t, "HS256", key.kid, key.publicPEM(t), claimsAt(epoch)), 401, "", "symmetric"},
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
	srv := newJWKSServer(t, 60)
	srv.Close()
	clock := newClock()
	v := newTestVerifier(t, newRemote(t, srv.URL, clock), clock.Now)
	e := echo.New()
	e.Use(Middleware(v))
	e.GET("/", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+sign(t, newKey(t, "ES256", "lms"), claimsAt(epoch), nil, false))
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503; body %s", rec.Code, rec.Body)
	}
}
