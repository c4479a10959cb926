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
// handler, a full answer and a 304; the -observed rows carry Keyd-Client
// and Keyd-Instance (recorded in memory on the request path).
func BenchmarkJWKSHandler(b *testing.B) {
	e := newEnv(b, signer.ES256, true)
	h := e.handler
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	etag := w.Header().Get("ETag")
	for _, tt := range []struct {
		name, inm string
		observed  bool
	}{{"200", "", false}, {"304", etag, false}, {"200-observed", "", true}, {"304-observed", etag, true}} {
		b.Run(tt.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil)
			if tt.inm != "" {
				req.Header.Set("If-None-Match", tt.inm)
			}
			if tt.observed {
				req.Header.Set("Keyd-Client", "ecommerce")
				req.Header.Set("Keyd-Instance", "ecommerce-7f9c:4242")
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
