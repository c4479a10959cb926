package vault

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
	"github.com/openedx-keyd/keyd/policies"
)

// TestVaultConnectionsReusedUnderConcurrency: keyd's Vault clients (its own
// and each caller's clone, all on the Router of NewRoutedClient) keep their
// connections to Vault. Through a loopback proxy that counts the
// connections it accepts, n concurrent signers of two callers (two LMS
// tokens: two lanes of up to four RS512 calls in flight each) authorize and
// sign; after a warm-up, further rounds (one of them with every caller's
// cached authorization expired at once) open no new connection, for n = 8,
// 16 and 64. On the client library's default pool (GOMAXPROCS+1 idle
// connections) the same load opened new connections in every round.
func TestVaultConnectionsReusedUnderConcurrency(t *testing.T) {
	e := setup(t, signer.RS512)
	keys := e.create(t, 1)
	tokens := []string{e.srv.Token(t, policies.LMSSigner), e.srv.Token(t, policies.LMSSigner)}
	for _, n := range []int{8, 16, 64} {
		t.Run(fmt.Sprintf("signers=%d", n), func(t *testing.T) {
			proxy := vaulttest.NewProxy(t, e.srv.Addr)
			client, _, err := NewRoutedClient([]string{proxy.Addr()}, 5*time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			client.SetToken(e.serverToken)
			clk := clock.NewFake(time.Now())
			b := e.newBackend(t, client, clk)
			// Warm-up: the first authorizations, then the signs, then every
			// authorization renewed at once, repeated until a whole round
			// opens no connection: the pool then holds as many as this load
			// ever has in flight at once (which the scheduler decides, so one
			// round may fall short of it). A pool that drops connections never
			// settles, and the test fails as before.
			warm := int64(-1)
			for i := 0; i < 6 && proxy.Accepted() != warm; i++ {
				warm = proxy.Accepted()
				signers(t, b, tokens, keys[0], n, 5)
				clk.Advance(authTTL + time.Second)
				signers(t, b, tokens, keys[0], n, 5)
			}
			warm = proxy.Accepted()
			for round := range 3 {
				if round == 1 {
					clk.Advance(authTTL + time.Second) // every caller re-authorizes at once
				}
				signers(t, b, tokens, keys[0], n, 10)
			}
			if got := proxy.Accepted() - warm; got != 0 {
				t.Errorf("%d concurrent signers: %d new Vault connections after the warm-up (%d during it), want 0", n, got, warm)
			}
			t.Logf("%d concurrent signers: %d connections in the warm-up, %d after", n, warm, proxy.Accepted()-warm)
		})
	}
}

// signers runs n goroutines that each authorize a token of tokens (in
// turn) as a signer and sign per times with key k, as concurrent sign
// requests do; any error fails t.
func signers(t *testing.T, b *Backend, tokens []string, k signer.Key, n, per int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			token := tokens[i%len(tokens)]
			for j := range per {
				if _, err := b.Authorize(ctx, token, auth.RoleSigner); err != nil {
					errs <- fmt.Errorf("authorize: %w", err)
					return
				}
				in := []byte(fmt.Sprintf("signer %d, sign %d", i, j))
				if _, err := b.Sign(ctx, signer.Credential{Token: token}, k.Version, k.Algorithm, in); err != nil {
					errs <- fmt.Errorf("sign: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestVaultHTTP2OnTLS: where Vault listens with TLS it offers HTTP/2, and
// keyd's clients use it: one connection carries every call in flight, so 64
// concurrent signers (and their authorizations) go over at most two
// connections, and none is opened after the warm-up.
func TestVaultHTTP2OnTLS(t *testing.T) {
	srv := vaulttest.StartTLS(t)
	e := &env{srv: srv, root: srv.Client(t, srv.RootToken), alg: signer.ES256,
		mount: vaulttest.UniqueName("transit"), key: vaulttest.UniqueName("jwt"), kv: vaulttest.UniqueName("kv")}
	if _, err := Bootstrap(context.Background(), e.root, e.bootstrapOptions()); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	e.serverToken = srv.Token(t, policies.Server)
	lms := srv.Token(t, policies.LMSSigner)

	proxy := vaulttest.NewProxy(t, srv.Addr)
	t.Setenv("VAULT_CACERT", srv.CACert) // how an operator gives keyd Vault's CA
	client, _, err := NewRoutedClient([]string{proxy.Addr()}, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(e.serverToken)
	clk := clock.NewFake(time.Now())
	e.backend = e.newBackend(t, client, clk)
	k := e.create(t, 1)[0]

	resp, err := client.Logical().ReadRawWithContext(context.Background(), "sys/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("keyd talks %s to a Vault that offers HTTP/2 on TLS", resp.Proto)
	}
	signers(t, e.backend, []string{lms}, k, 64, 10)
	clk.Advance(authTTL + time.Second)
	signers(t, e.backend, []string{lms}, k, 64, 10)
	warm := proxy.Accepted()
	if warm > 2 {
		t.Errorf("%d connections for 64 signers over HTTP/2, want at most 2", warm)
	}
	clk.Advance(authTTL + time.Second)
	signers(t, e.backend, []string{lms}, k, 64, 20)
	if got := proxy.Accepted() - warm; got != 0 {
		t.Errorf("%d new connections after the warm-up, want 0", got)
	}
}

// TestAuthorizeSharesOneCheckPerCaller: concurrent requests of one caller
// whose authorization is not cached (the first ones, or all at once when it
// expires) share one Vault check: 64 of them need one connection, not 64.
func TestAuthorizeSharesOneCheckPerCaller(t *testing.T) {
	e := setup(t, signer.ES256)
	lms := e.srv.Token(t, policies.LMSSigner)
	proxy := vaulttest.NewProxy(t, e.srv.Addr)
	client, _, err := NewRoutedClient([]string{proxy.Addr()}, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(e.serverToken)
	clk := clock.NewFake(time.Now())
	b := e.newBackend(t, client, clk)
	for round := range 2 {
		before := proxy.Accepted()
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		start := make(chan struct{})
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				p, err := b.Authorize(context.Background(), lms, auth.RoleSigner)
				if err == nil && p.Credential.Token != lms {
					err = fmt.Errorf("principal carries another token")
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := proxy.Accepted() - before; got > 1 {
			t.Errorf("round %d: 64 concurrent authorizations of one caller opened %d connections, want at most 1", round, got)
		}
		clk.Advance(authTTL + time.Second)
	}
	// A caller without the role still gets its own answer through the shared check.
	other := e.srv.Token(t)
	if _, err := b.Authorize(context.Background(), other, auth.RoleSigner); !errors.Is(err, signer.ErrPermissionDenied) {
		t.Errorf("a token without the signer role: %v, want ErrPermissionDenied", err)
	}
}
