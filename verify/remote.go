package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

// Defaults applied by NewRemoteKeySet to zero RemoteConfig fields.
const (
	DefaultMaxAge             = 5 * time.Minute
	DefaultMinRefreshInterval = 10 * time.Second
	DefaultMaxStaleness       = 24 * time.Hour
	DefaultMaxResponseSize    = 1 << 20
	defaultFetchTimeout       = 10 * time.Second
)

// RemoteConfig tunes a RemoteKeySet. Zero values take the defaults above.
type RemoteConfig struct {
	// Client fetches the JWKS; nil means a client with a 10s timeout.
	Client *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DefaultMaxAge is how long a fetched set stays fresh when the response
	// has no Cache-Control max-age.
	DefaultMaxAge time.Duration
	// MinRefreshInterval is the least time between two fetches the cache did
	// not ask for: at most one refetch per interval for unknown kids (so a
	// flood of random kids cannot flood keyd), and one retry per interval
	// after a failed fetch. It is also the shortest freshness honoured.
	MinRefreshInterval time.Duration
	// MaxStaleness is how long cached keys are trusted after the last
	// successful fetch or revalidation. Past it, Key fails with ErrStaleKeys
	// until the set can be fetched again.
	MaxStaleness time.Duration
	// MaxResponseSize bounds the JWKS response body in bytes.
	MaxResponseSize int64
}

// RemoteKeySet is a KeySet fetched from a JWKS URL, such as keyd's
// /.well-known/jwks.json. It caches the set for as long as Cache-Control
// max-age allows, revalidates it with If-None-Match, refetches once when a
// token names an unknown kid (concurrent misses share one fetch), and keeps
// serving cached keys while the server is unreachable, up to MaxStaleness.
// It is safe for concurrent use.
type RemoteKeySet struct {
	url    string
	cfg    RemoteConfig
	misses *rate.Limiter // unknown-kid refetches
	flight singleflight.Group

	fetchMu sync.Mutex // one fetch at a time, so an older answer never replaces a newer one
	state   atomic.Pointer[cacheState]
}

// cacheState is an immutable snapshot of the cache; fetch replaces it whole.
type cacheState struct {
	keys        map[string]jose.JSONWebKey // nil until the first successful fetch
	etag        string
	validatedAt time.Time // last 200 or 304: staleness counts from here
	freshUntil  time.Time // validatedAt + max-age
	failedAt    time.Time // last failed fetch since the last success
	err         error     // why that fetch failed
	generation  uint64    // number of fetches completed
}

// NewRemoteKeySet returns a key set for jwksURL (http or https). Nothing is
// fetched until the first Key or Refresh.
func NewRemoteKeySet(jwksURL string, cfg RemoteConfig) (*RemoteKeySet, error) {
	var errs []error
	if u, err := url.Parse(jwksURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("verify: jwks url %q is not an http(s) URL", jwksURL))
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{{"DefaultMaxAge", cfg.DefaultMaxAge}, {"MinRefreshInterval", cfg.MinRefreshInterval}, {"MaxStaleness", cfg.MaxStaleness}} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("verify: config: %s %s is negative", d.name, d.value))
		}
	}
	if cfg.MaxResponseSize < 0 {
		errs = append(errs, fmt.Errorf("verify: config: MaxResponseSize %d is negative", cfg.MaxResponseSize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: defaultFetchTimeout}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DefaultMaxAge == 0 {
		cfg.DefaultMaxAge = DefaultMaxAge
	}
	if cfg.MinRefreshInterval == 0 {
		cfg.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if cfg.MaxStaleness == 0 {
		cfg.MaxStaleness = DefaultMaxStaleness
	}
	if cfg.MaxResponseSize == 0 {
		cfg.MaxResponseSize = DefaultMaxResponseSize
	}
	s := &RemoteKeySet{
		url:    jwksURL,
		cfg:    cfg,
		misses: rate.NewLimiter(rate.Every(cfg.MinRefreshInterval), 1),
	}
	s.state.Store(&cacheState{})
	return s, nil
}

// Key returns the key with the given kid, fetching the set first when the
// cache is empty or past its max-age, and once more (rate-limited) when the
// kid is unknown.
func (s *RemoteKeySet) Key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	now := s.cfg.Now()
	start := s.state.Load()
	if s.due(start, now) {
		err := s.shared(ctx, "refresh", func() {
			if s.due(s.state.Load(), now) { // a flight that just ended may have refreshed it
				s.fetch()
			}
		})
		if err != nil {
			return jose.JSONWebKey{}, err
		}
	}
	st := s.state.Load()
	if key, found, err := st.lookup(kid, now, s.cfg.MaxStaleness); err != nil || found {
		return key, err
	}

	// Unknown kid: the set may have gained a key since it was fetched, unless
	// it was fetched during this call. Concurrent misses share one fetch; a
	// miss that arrives after it sees the new generation and skips its own.
	if st.generation == start.generation {
		seen := st.generation
		err := s.shared(ctx, "miss", func() {
			if s.state.Load().generation == seen && s.misses.AllowN(now, 1) {
				s.fetch()
			}
		})
		if err != nil {
			return jose.JSONWebKey{}, err
		}
		key, found, err := s.state.Load().lookup(kid, now, s.cfg.MaxStaleness)
		if err != nil || found {
			return key, err
		}
	}
	return jose.JSONWebKey{}, fmt.Errorf("%w: kid %q is not published at %s", ErrUnknownKey, kid, s.url)
}

// Refresh fetches the set now, whatever the cache's age, and reports why it
// failed if it did. Call it at startup to fail fast on a wrong URL.
func (s *RemoteKeySet) Refresh(ctx context.Context) error {
	if err := s.shared(ctx, "refresh", s.fetch); err != nil {
		return err
	}
	if err := s.state.Load().err; err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// lookup finds kid in the snapshot if its keys may still be trusted at now.
func (st *cacheState) lookup(kid string, now time.Time, maxStale time.Duration) (jose.JSONWebKey, bool, error) {
	if st.keys == nil {
		return jose.JSONWebKey{}, false, st.wrap(ErrKeySetUnavailable, "no key set fetched yet")
	}
	if age := now.Sub(st.validatedAt); age > maxStale {
		return jose.JSONWebKey{}, false, st.wrap(ErrStaleKeys, fmt.Sprintf("last refreshed %s ago, bound %s", age.Round(time.Second), maxStale))
	}
	key, ok := st.keys[kid]
	return key, ok, nil
}

// wrap adds detail and the last fetch error, if any, to a sentinel.
func (st *cacheState) wrap(sentinel error, detail string) error {
	if st.err == nil {
		return fmt.Errorf("%w: %s", sentinel, detail)
	}
	return fmt.Errorf("%w: %s: %w", sentinel, detail, st.err)
}

// due reports whether the cache should be fetched at now: it is empty or
// past its max-age, and no failed fetch happened within MinRefreshInterval.
func (s *RemoteKeySet) due(st *cacheState, now time.Time) bool {
	if !st.failedAt.IsZero() && now.Sub(st.failedAt) < s.cfg.MinRefreshInterval {
		return false
	}
	return st.keys == nil || !now.Before(st.freshUntil)
}

// shared runs fn once for all concurrent callers using the same name, and
// waits for it unless ctx ends first. fn itself is not bound to any one
// caller's context.
func (s *RemoteKeySet) shared(ctx context.Context, name string, fn func()) error {
	ch := s.flight.DoChan(name, func() (any, error) {
		fn()
		return nil, nil
	})
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetch GETs the set (conditionally when cached) and stores the outcome.
func (s *RemoteKeySet) fetch() {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()

	next := *s.state.Load()
	next.generation++
	keys, etag, maxAge, notModified, err := s.get(next.etag, next.keys != nil)
	now := s.cfg.Now()
	switch {
	case err != nil:
		next.failedAt, next.err = now, err
	default:
		if !notModified {
			next.keys, next.etag = keys, etag
		}
		next.validatedAt, next.freshUntil = now, now.Add(maxAge)
		next.failedAt, next.err = time.Time{}, nil
	}
	s.state.Store(&next)
}

// get performs one request. notModified is a 304 to a conditional request.
func (s *RemoteKeySet) get(etag string, cached bool) (keys map[string]jose.JSONWebKey, newETag string, maxAge time.Duration, notModified bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, "", 0, false, fmt.Errorf("fetch jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if cached && etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, "", 0, false, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	maxAge = s.freshness(resp.Header)

	switch {
	case resp.StatusCode == http.StatusNotModified && cached && etag != "":
		return nil, etag, maxAge, true, nil
	case resp.StatusCode != http.StatusOK:
		return nil, "", 0, false, fmt.Errorf("fetch jwks %s: status %s", s.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxResponseSize+1))
	if err != nil {
		return nil, "", 0, false, fmt.Errorf("fetch jwks %s: %w", s.url, err)
	}
	if int64(len(body)) > s.cfg.MaxResponseSize {
		return nil, "", 0, false, fmt.Errorf("fetch jwks %s: response is larger than %d bytes", s.url, s.cfg.MaxResponseSize)
	}
	keys, err = parseJWKS(body)
	if err != nil {
		return nil, "", 0, false, fmt.Errorf("fetch jwks %s: %w", s.url, err)
	}
	return keys, resp.Header.Get("ETag"), maxAge, false, nil
}

// freshness is how long a response stays fresh: Cache-Control max-age
// (no-cache and no-store count as 0), or DefaultMaxAge without one, kept
// between MinRefreshInterval and MaxStaleness.
func (s *RemoteKeySet) freshness(h http.Header) time.Duration {
	age, noCache := s.cfg.DefaultMaxAge, false
	for _, directive := range strings.Split(h.Get("Cache-Control"), ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(directive), "=")
		switch strings.ToLower(name) {
		case "no-cache", "no-store":
			noCache = true
		case "max-age":
			if secs, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64); err == nil && secs >= 0 {
				age = time.Duration(min(secs, int64(s.cfg.MaxStaleness/time.Second))) * time.Second
			}
		}
	}
	if noCache {
		age = 0
	}
	return min(max(age, s.cfg.MinRefreshInterval), s.cfg.MaxStaleness)
}
