package api_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/claims"
	"github.com/openedx-keyd/keyd/internal/issue"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// slowAuth takes delay (or until the request's context ends) before it
// lets every token sign, as a Vault token lookup through a partition.
type slowAuth struct{ delay time.Duration }

func (a slowAuth) Authorize(ctx context.Context, token string, roles ...auth.Role) (auth.Principal, error) {
	select {
	case <-time.After(a.delay):
		return auth.Principal{Role: auth.RoleSigner, Actor: "slow", Credential: signer.Credential{Token: token}}, nil
	case <-ctx.Done():
		return auth.Principal{}, ctx.Err()
	}
}

// hungBackend's Sign waits until the request's context ends and returns
// its error as it is (a batch whose caller stopped waiting does so).
type hungBackend struct{ signer.Backend }

func (hungBackend) Sign(ctx context.Context, _ signer.Credential, _ int, _ signer.Algorithm, _ []byte) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// Issue 20 item 8: --sign-timeout bounds the whole sign request, the
// caller's authorization included, not each backend call: a backend that
// hangs (a partition) answers a JSON 503 with Retry-After once the budget
// is spent. Before, each call had its own timeout and a request could take
// several (up to 3.2 s at a heal with a 2 s budget), and a context error
// was a 500.
func TestSignBudgetBoundsTheWholeRequest(t *testing.T) {
	env := newEnv(t, signer.ES256, true)
	const budget = 400 * time.Millisecond
	for _, tc := range []struct {
		name string
		auth time.Duration // time the authorization takes
	}{
		{"backend hangs", 0},
		{"slow authorization, then the backend hangs", 300 * time.Millisecond},
		{"authorization outlives the budget", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := hungBackend{env.backend}
			srv := httptest.NewServer(api.New(api.Config{
				Auth: slowAuth{tc.auth}, Backend: b, Lifecycle: env.mgr, JWKS: env.jwks,
				Issuer: issue.New(issue.Config{Backend: b, Lifecycle: env.mgr, Clock: env.clk, Logger: discard(),
					Policy: claims.Policy{Issuers: []string{issuer}, MaxLifetime: time.Hour, ClockSkew: time.Minute}}),
				Logger: discard(), SignTimeout: budget,
			}))
			defer srv.Close()
			e := &testEnv{url: srv.URL}
			began := time.Now()
			r := e.post(t, "/v1/sign", signerTok, signBody("", ""))
			took := time.Since(began)
			checkError(t, r, 503, "backend_unavailable")
			if took < budget || took > budget+300*time.Millisecond {
				t.Errorf("answered after %v; want the %v budget", took, budget)
			}
		})
	}
	// The JWKS is not bound by it, and still served.
	if r := env.get(t, "/.well-known/jwks.json", ""); r.status != 200 || !strings.Contains(string(r.body), `"keys"`) {
		t.Errorf("JWKS: %d %s", r.status, r.body)
	}
}
