package vault

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// TestAuthorizeLookupWithoutBody: a Vault (or a proxy in front of it) that
// answers lookup-self with 204 and no body gives a clear "unavailable",
// never a panic on the missing token data (the client library reports the
// empty body as an error, which wrap maps).
func TestAuthorizeLookupWithoutBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	cfg := api.DefaultConfig()
	cfg.Address = srv.URL
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Authorize(context.Background(), "some-token", auth.RoleSigner)
	if !errors.Is(err, signer.ErrUnavailable) {
		t.Fatalf("Authorize = %v, want signer.ErrUnavailable", err)
	}
}
