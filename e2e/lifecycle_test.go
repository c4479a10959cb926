package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// cachingVerifier is an IDA written from the JWKS spec alone: it caches the
// JWKS as Cache-Control allows and refetches once on an unknown kid.
type cachingVerifier struct {
	url string

	mu      sync.Mutex
	keys    jose.JSONWebKeySet
	expires time.Time
	etag    string
}

func (v *cachingVerifier) fetch() error {
	req, _ := http.NewRequest(http.MethodGet, v.url, nil)
	if v.etag != "" {
		req.Header.Set("If-None-Match", v.etag)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	maxAge := time.Duration(0)
	for _, part := range strings.Split(resp.Header.Get("Cache-Control"), ",") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(part), "max-age="); ok {
			n, _ := strconv.Atoi(s)
			maxAge = time.Duration(n) * time.Second
		}
	}
	v.expires = time.Now().Add(maxAge)
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil
	case http.StatusOK:
		raw, _ := io.ReadAll(resp.Body)
		var set jose.JSONWebKeySet
		if err := jsonUnmarshal(raw, &set); err != nil {
			return err
		}
		v.keys, v.etag = set, resp.Header.Get("ETag")
		return nil
	}
	return fmt.Errorf("jwks: %s", resp.Status)
}

func (v *cachingVerifier) key(kid string) (*jose.JSONWebKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if time.Now().After(v.expires) {
		if err := v.fetch(); err != nil {
			return nil, err
		}
	}
	if ks := v.keys.Key(kid); len(ks) == 1 {
		return &ks[0], nil
	}
	if err := v.fetch(); err != nil { // once, on an unknown kid
		return nil, err
	}
	if ks := v.keys.Key(kid); len(ks) == 1 {
		return &ks[0], nil
	}
	return nil, fmt.Errorf("kid %s not in the JWKS", kid)
}

func (v *cachingVerifier) verify(token string) error {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS512, jose.RS256, jose.ES256, jose.EdDSA})
	if err != nil {
		return err
	}
	k, err := v.key(jws.Signatures[0].Header.KeyID)
	if err != nil {
		return err
	}
	if _, err := jws.Verify(k); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	return nil
}

type signed struct {
	token, kid string
	at, exp    time.Time
}

// runLifecycle signs continuously against urls (replicas) for d while
// verifiers check every token right away and again just before it expires,
// and watchers check the key states and the JWKS.
func runLifecycle(t *testing.T, urls []string, signerTok, auditorTok string, d time.Duration) {
	const (
		propagation = 2 * time.Second
		margin      = time.Second
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu         sync.Mutex
		failures   []string
		firstSeen  = map[string]time.Time{}
		lastSeen   = map[string]time.Time{}
		firstSign  = map[string]time.Time{}
		lastExp    = map[string]time.Time{}
		initial    = map[string]bool{}
		signedN    int
		maxActives int
		jwksPolls  atomic.Int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(time.Now().Format("15:04:05.000 ")+format, args...))
		}
	}
	var wg sync.WaitGroup
	every := func(period time.Duration, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				f()
				select {
				case <-ctx.Done():
				case <-time.After(period):
				}
			}
		}()
	}

	// The JWKS as a verifier sees it, from every replica.
	for i, u := range urls {
		every(100*time.Millisecond, func() {
			var set jose.JSONWebKeySet
			if _, err := call(ctx, "GET", u+"/.well-known/jwks.json", "", nil, &set); err != nil {
				if ctx.Err() == nil {
					fail("jwks %d: %v", i, err)
				}
				return
			}
			now := time.Now()
			defer jwksPolls.Add(1)
			mu.Lock()
			defer mu.Unlock()
			for _, k := range set.Keys {
				if _, ok := firstSeen[k.KeyID]; !ok {
					firstSeen[k.KeyID] = now
				}
				lastSeen[k.KeyID] = now
			}
		})
		// Exactly one active key at all times.
		every(100*time.Millisecond, func() {
			var out struct{ Keys []struct{ KID, State string } }
			if _, err := call(ctx, "GET", u+"/v1/keys", auditorTok, nil, &out); err != nil {
				if ctx.Err() == nil {
					fail("keys %d: %v", i, err)
				}
				return
			}
			n := 0
			for _, k := range out.Keys {
				if k.State == "active" {
					n++
				}
			}
			if n != 1 {
				fail("replica %d shows %d active keys: %+v", i, n, out.Keys)
			}
			mu.Lock()
			maxActives = max(maxActives, n)
			mu.Unlock()
		})
	}
	// Wait for the first JWKS poll of every replica so the bootstrap key counts as initial.
	waitUntil(t, 5*time.Second, "first JWKS poll", func() bool { return jwksPolls.Load() >= int64(len(urls)) })
	mu.Lock()
	for kid := range firstSeen {
		initial[kid] = true
	}
	mu.Unlock()

	verifier := &cachingVerifier{url: urls[0] + "/.well-known/jwks.json"}
	late := make(chan signed, 100000)
	signCtx, stopSigning := context.WithTimeout(ctx, d)
	defer stopSigning()
	var signers sync.WaitGroup
	for i := range 2 {
		signers.Add(1)
		go func() {
			defer signers.Done()
			u := urls[i%len(urls)]
			claims := map[string]any{"iss": "http://localhost:18000/oauth2", "aud": "openedx", "sub": "anon-1", "grant_type": "password"}
			for signCtx.Err() == nil {
				var out struct {
					Token, KID string
					ExpiresAt  string `json:"expires_at"` // without the tag it stayed empty and the exp checks below checked nothing
				}
				if _, err := call(signCtx, "POST", u+"/v1/sign", signerTok, map[string]any{"claims": claims}, &out); err != nil {
					if signCtx.Err() == nil {
						fail("sign: %v", err)
					}
					continue
				}
				exp, _ := time.Parse(time.RFC3339, out.ExpiresAt)
				now := time.Now()
				mu.Lock()
				signedN++
				if _, ok := firstSign[out.KID]; !ok {
					firstSign[out.KID] = now
				}
				if exp.After(lastExp[out.KID]) {
					lastExp[out.KID] = exp
				}
				mu.Unlock()
				if err := verifier.verify(out.Token); err != nil {
					fail("fresh token from kid %s does not verify: %v", out.KID, err)
				}
				late <- signed{token: out.Token, kid: out.KID, at: now, exp: exp}
				time.Sleep(20 * time.Millisecond) // a steady rate of signatures, not a busy loop
			}
		}()
	}
	// Re-verify every token shortly before it expires.
	lateDone := make(chan struct{})
	go func() {
		defer close(lateDone)
		for s := range late {
			time.Sleep(time.Until(s.exp.Add(-700 * time.Millisecond))) // wall time is the point: just before exp
			if err := verifier.verify(s.token); err != nil {
				fail("token from kid %s signed %s fails before its exp %s: %v", s.kid, s.at.Format("15:04:05.000"), s.exp.Format("15:04:05"), err)
			}
		}
	}()
	signers.Wait()
	close(late)
	<-lateDone
	// Let the last keys retire (lifetime 5s + 2 × skew 1s, plus the
	// refresh): wait until the keys whose tokens have all expired have left
	// the JWKS, as the checks below expect.
	waitUntil(t, 20*time.Second, "signing keys leave the JWKS after their tokens expire", func() bool {
		var set jose.JSONWebKeySet
		if _, err := call(ctx, "GET", urls[0]+"/.well-known/jwks.json", "", nil, &set); err != nil {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		left := 0
		for kid, exp := range lastExp {
			if !slices.ContainsFunc(set.Keys, func(k jose.JSONWebKey) bool { return k.KeyID == kid }) && time.Now().After(exp) {
				left++
			}
		}
		return left >= len(firstSign)-3
	})
	cancel()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures {
		t.Error(f)
	}
	if signedN < 100 {
		t.Errorf("only %d tokens signed", signedN)
	}
	if len(firstSign) < int(d/(3*time.Second))-2 {
		t.Errorf("only %d keys signed in %v of rotations every 3s", len(firstSign), d)
	}
	final := map[string]bool{}
	var set jose.JSONWebKeySet
	if _, err := call(context.Background(), "GET", urls[0]+"/.well-known/jwks.json", "", nil, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		final[k.KeyID] = true
	}
	gone := 0
	for kid, first := range firstSign {
		if !initial[kid] && first.Sub(firstSeen[kid]) < propagation-margin {
			t.Errorf("kid %s signed %v after it was first published, want >= %v", kid, first.Sub(firstSeen[kid]), propagation)
		}
		if lastSeen[kid].Before(lastExp[kid].Add(-margin)) {
			t.Errorf("kid %s left the JWKS at %s, before its last token expired at %s", kid, lastSeen[kid].Format("15:04:05.000"), lastExp[kid].Format("15:04:05"))
		}
		if !final[kid] {
			gone++
		}
	}
	if gone < len(firstSign)-3 {
		t.Errorf("only %d of %d keys left the JWKS after their tokens expired", gone, len(firstSign))
	}
	t.Logf("%d tokens, %d signing keys, %d retired and destroyed, max actives %d", signedN, len(firstSign), gone, maxActives)
}

func TestLifecycleLocal(t *testing.T) {
	env := []string{"KEYD_SIGNER_TOKEN=e2e-signer-token-0123456789abcdef0123", "KEYD_ADMIN_TOKEN=e2e-admin-token-0123456789abcdef0123", "KEYD_AUDITOR_TOKEN=e2e-auditor-token-0123456789abcdef0123"}
	k := startKeyd(t, env, append([]string{"--data-dir", t.TempDir(), "--algorithm", "ES256"}, fastLifecycle...)...)
	runLifecycle(t, []string{k.URL}, "e2e-signer-token-0123456789abcdef0123", "e2e-auditor-token-0123456789abcdef0123", 30*time.Second)
}
