package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwksServer is a keyd-like JWKS endpoint whose key list tests change while
// verifiers use it. It counts requests by answer.
type jwksServer struct {
	*httptest.Server
	mu       sync.Mutex
	keys     []*testKey
	maxAge   int
	status   int // answer with this status instead, when set
	full     atomic.Int64
	notMod   atomic.Int64
	failures atomic.Int64
	t        testing.TB
}

func newJWKSServer(t testing.TB, maxAge int, keys ...*testKey) *jwksServer {
	s := &jwksServer{keys: keys, maxAge: maxAge, t: t}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	body, status := jwksOf(s.t, s.keys...), s.status
	maxAge := s.maxAge
	s.mu.Unlock()
	if status != 0 {
		s.failures.Add(1)
		http.Error(w, "unavailable", status)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", maxAge))
	if r.Header.Get("If-None-Match") == etag {
		s.notMod.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.full.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func (s *jwksServer) publish(keys ...*testKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func (s *jwksServer) setStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

func (s *jwksServer) requests() int64 { return s.full.Load() + s.notMod.Load() + s.failures.Load() }

func newRemote(t testing.TB, url string, clock *fakeClock) *RemoteKeySet {
	t.Helper()
	keys, err := NewRemoteKeySet(url, RemoteConfig{Now: clock.Now, MinRefreshInterval: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestVerifyRemoteRotation follows a key rotation the way keyd does it: a new
// key appears in the JWKS, the verifier picks it up on the unknown kid,
// honours max-age and 304, and survives the server going away within the
// staleness bound.
func TestVerifyRemoteRotation(t *testing.T) {
	ctx := context.Background()
	oldKey, newKey := newKey(t, "ES256", "v1"), newKey(t, "ES256", "v2")
	srv := newJWKSServer(t, 300, oldKey)
	clock := newClock()
	v := newTestVerifier(t, newRemote(t, srv.URL, clock), clock.Now)

	mustVerify := func(step string, k *testKey) {
		t.Helper()
		if _, err := v.Verify(ctx, sign(t, k, claimsAt(clock.Now()), nil, false)); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	wantRequests := func(step string, full, notModified int64) {
		t.Helper()
		if got, got304 := srv.full.Load(), srv.notMod.Load(); got != full || got304 != notModified {
			t.Fatalf("%s: %d full fetches and %d 304s, want %d and %d", step, got, got304, full, notModified)
		}
	}

	mustVerify("first token", oldKey)
	wantRequests("first token", 1, 0)
	mustVerify("within max-age", oldKey)
	wantRequests("within max-age", 1, 0)

	srv.publish(oldKey, newKey) // rotation: the new key is published
	clock.Advance(time.Minute)
	mustVerify("old key still fresh", oldKey)
	wantRequests("old key still fresh", 1, 0)
	mustVerify("new kid", newKey)
	wantRequests("new kid refetched once", 2, 0)
	mustVerify("new kid again", newKey)
	wantRequests("new kid cached", 2, 0)

	clock.Advance(299 * time.Second) // 299s after the refetch: still fresh
	mustVerify("end of max-age", newKey)
	wantRequests("end of max-age", 2, 0)
	clock.Advance(2 * time.Second) // past max-age: revalidate, unchanged
	mustVerify("past max-age", newKey)
	wantRequests("revalidated", 2, 1)
	clock.Advance(200 * time.Second) // a 304 makes the set fresh again
	mustVerify("fresh after 304", oldKey)
	wantRequests("fresh after 304", 2, 1)

	srv.publish(newKey) // the old key retires
	clock.Advance(101 * time.Second)
	mustVerify("after retirement", newKey)
	wantRequests("after retirement", 3, 1)
	if _, err := v.Verify(ctx, sign(t, oldKey, claimsAt(clock.Now()), nil, false)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("retired key: got %v, want ErrUnknownKey", err)
	}

	srv.Close() // keyd goes away: cached keys keep working within the bound
	for _, step := range []time.Duration{10 * time.Minute, time.Hour, 20 * time.Hour} {
		clock.Advance(step)
		mustVerify(fmt.Sprintf("server gone, +%s", step), newKey)
	}
	clock.Advance(4 * time.Hour) // more than 24h since the last refresh
	_, err := v.Verify(ctx, sign(t, newKey, claimsAt(clock.Now()), nil, false))
	if !errors.Is(err, ErrStaleKeys) || Reason(err) != "stale_keys" {
		t.Fatalf("past the staleness bound: got %v, want ErrStaleKeys", err)
	}
	if !strings.Contains(err.Error(), "stale") {
		t.Errorf("stale error %q does not say so", err)
	}
}

// TestVerifyRemoteRecovers: once the server answers again, stale keys are
// trusted again after a fetch.
func TestVerifyRemoteRecovers(t *testing.T) {
	ctx := context.Background()
	key := newKey(t, "EdDSA", "lms")
	srv := newJWKSServer(t, 60, key)
	clock := newClock()
	keys := newRemote(t, srv.URL, clock)
	if err := keys.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	srv.setStatus(http.StatusServiceUnavailable)
	clock.Advance(25 * time.Hour)
	if _, err := keys.Key(ctx, key.kid); !errors.Is(err, ErrStaleKeys) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("got %v, want ErrStaleKeys with the fetch error", err)
	}
	failures := srv.failures.Load()
	if _, err := keys.Key(ctx, key.kid); !errors.Is(err, ErrStaleKeys) {
		t.Fatalf("got %v, want ErrStaleKeys", err)
	}
	if srv.failures.Load() != failures {
		t.Error("retried a failed fetch within MinRefreshInterval")
	}
	srv.setStatus(0)
	clock.Advance(10 * time.Second)
	if _, err := keys.Key(ctx, key.kid); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestVerifyRemoteUnavailable(t *testing.T) {
	srv := newJWKSServer(t, 60)
	srv.Close()
	keys := newRemote(t, srv.URL, newClock())
	_, err := keys.Key(context.Background(), "kid")
	if !errors.Is(err, ErrKeySetUnavailable) || Reason(err) != "keys_unavailable" {
		t.Fatalf("got %v, want ErrKeySetUnavailable", err)
	}
}

// TestVerifyRemoteCoalescing: concurrent misses on a new kid share one fetch,
// and a flood of random kids costs at most one fetch per MinRefreshInterval.
func TestVerifyRemoteCoalescing(t *testing.T) {
	ctx := context.Background()
	a, b := newKey(t, "RS256", "v1"), newKey(t, "RS256", "v2")
	srv := newJWKSServer(t, 300, a)
	clock := newClock()
	v := newTestVerifier(t, newRemote(t, srv.URL, clock), clock.Now)
	if _, err := v.Verify(ctx, sign(t, a, claimsAt(epoch), nil, false)); err != nil {
		t.Fatal(err)
	}
	srv.publish(a, b)

	token := sign(t, b, claimsAt(epoch), nil, false)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			_, err := v.Verify(ctx, token)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent verification: %v", err)
		}
	}
	if got := srv.requests(); got != 2 {
		t.Fatalf("%d requests, want 2 (the first fetch and one shared refetch)", got)
	}

	flood := func() {
		for i := range 200 {
			wg.Go(func() {
				tok := unsigned(t, map[string]any{"alg": "RS256", "kid": fmt.Sprintf("random-%d", i)}, claimsAt(epoch)) + "c2ln"
				if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrUnknownKey) {
					t.Errorf("random kid: got %v, want ErrUnknownKey", err)
				}
			})
		}
		wg.Wait()
	}
	flood() // same instant as the shared refetch: no token left
	if got := srv.requests(); got != 2 {
		t.Fatalf("flood right after a refetch: %d requests, want 2", got)
	}
	clock.Advance(10 * time.Second)
	flood()
	if got := srv.requests(); got != 3 {
		t.Fatalf("flood after MinRefreshInterval: %d requests, want 3", got)
	}
}

func TestVerifyRemoteLimits(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("a", 2<<20) + `"}`))
	}))
	defer big.Close()
	keys := newRemote(t, big.URL, newClock())
	if err := keys.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("2 MiB JWKS: got %v", err)
	}
	if _, err := NewRemoteKeySet("ftp://x/jwks", RemoteConfig{MaxStaleness: -1}); err == nil ||
		!strings.Contains(err.Error(), "http(s)") || !strings.Contains(err.Error(), "MaxStaleness") {
		t.Errorf("bad config: got %v", err)
	}
}

func TestVerifyRemoteCacheControl(t *testing.T) {
	keys := newRemote(t, "https://keyd.example.com/.well-known/jwks.json", newClock())
	for _, tt := range []struct {
		header string
		want   time.Duration
	}{
		{"", DefaultMaxAge},
		{"public, max-age=300", 300 * time.Second},
		{"max-age=1", 10 * time.Second}, // floored at MinRefreshInterval
		{"no-cache, max-age=600", 10 * time.Second},
		{"max-age=999999999999", DefaultMaxStaleness},
		{"max-age=junk", DefaultMaxAge},
	} {
		h := http.Header{}
		h.Set("Cache-Control", tt.header)
		if got := keys.freshness(h); got != tt.want {
			t.Errorf("Cache-Control %q: freshness %s, want %s", tt.header, got, tt.want)
		}
	}
}

func TestVerifyRemoteContextCanceled(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	keys := newRemote(t, srv.URL, newClock())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := keys.Key(ctx, "kid"); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}
