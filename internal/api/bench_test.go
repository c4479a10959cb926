package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// BenchmarkSignHandler is POST /v1/sign through the served handler (ES256
// on the local backend, so that the handler's own cost shows).
func BenchmarkSignHandler(b *testing.B) {
	e := newEnv(b, signer.ES256, true)
	h := e.handler
	body := signBody("", "")
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/sign", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+signerTok)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("sign = %d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkJWKSHandler is GET /.well-known/jwks.json through the served
// handler, a full answer and a 304.
func BenchmarkJWKSHandler(b *testing.B) {
	e := newEnv(b, signer.ES256, true)
	h := e.handler
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	etag := w.Header().Get("ETag")
	for _, tt := range []struct{ name, inm string }{{"200", ""}, {"304", etag}} {
		b.Run(tt.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil)
			if tt.inm != "" {
				req.Header.Set("If-None-Match", tt.inm)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK && w.Code != http.StatusNotModified {
					b.Fatalf("jwks = %d", w.Code)
				}
			}
		})
	}
}
