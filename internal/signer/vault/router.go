package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/clock"
)

// Router is the http.RoundTripper under every Vault client keyd makes
// (keyd's own and the clones that carry a caller's token): it sends each
// request to the first healthy address of the list, moves on when a node
// refuses connections or is sealed, and retries with backoff, within the
// request's own deadline, the answers a Raft cluster gives during a leader
// election. It never changes a request's token.
//
// What is retried:
//   - an attempt Vault never saw (the connection could not be made:
//     refused, or a connect that outlived the attempt, as to a node cut off
//     by a network partition) or a sealed node: at once on the next healthy
//     address, for every request. When every address fails so, the error is
//     returned at once: Vault is down or unreachable, not electing.
//   - an attempt that was sent and then reset or timed out, under a request
//     that changes nothing: at once on the next healthy address (the node
//     died or hangs with it in flight). Under a write it is not re-sent (it
//     may have been applied): it fails, and the next request goes to the
//     next healthy address.
//   - "no active node" answers (a standby that knows no leader, a node that
//     is not active): with backoff, for every request (Vault did not apply it).
//     Each retry goes to the next address of the list (the preferred one
//     stays current): a standby that has not yet learnt of the new leader
//     keeps failing for a few seconds, while another node may answer.
//   - a standby that could not forward to the active node (its 307
//     fallback) and any other 5xx, for a request that changes nothing (GET,
//     or a context marked with Idempotent): with backoff. A write in that
//     case may have been applied, so it is never re-sent: the caller gets a
//     503 and the lifecycle retries on its next tick, from what Vault then
//     holds.
//   - nothing once the request's own context has ended.
//
// A redirect is never followed: keyd talks only to the nodes it was given.
type Router struct {
	addrs   []*url.URL
	base    http.RoundTripper
	attempt time.Duration
	log     *slog.Logger
	probe   *http.Client
	clock   clock.Clock

	mu     sync.Mutex
	cur    int  // index into addrs
	moving bool // a failover is probing the other addresses

	// onDenied, when set, is told the token of every request Vault answered
	// 403 (the login session checks whether it is keyd's own, revoked).
	onDenied func(token string)
}

// RouterConfig configures NewRouter.
type RouterConfig struct {
	// Addrs are the node URLs, in order of preference (at least one).
	Addrs []string
	// Attempt bounds one attempt (default DefaultCallerTimeout): a node
	// that accepts and never answers fails the attempt, not the budget.
	Attempt time.Duration
	// Base is the transport that makes the connections (default: the Vault
	// client library's default transport, TLS settings included, with keyd's
	// idle pool: see pooled).
	Base   http.RoundTripper
	Logger *slog.Logger
	// Clock paces Watch (default clock.Real).
	Clock clock.Clock
}

// NewRouter returns a Router over cfg.Addrs. It probes nothing yet: the
// first request goes to the first address, and a failover probes.
func NewRouter(cfg RouterConfig) (*Router, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("vault: no address")
	}
	r := &Router{base: cfg.Base, attempt: cfg.Attempt, log: cfg.Logger, clock: cfg.Clock}
	if r.clock == nil {
		r.clock = clock.Real{}
	}
	for _, a := range cfg.Addrs {
		u, err := url.Parse(strings.TrimRight(strings.TrimSpace(a), "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("vault: address %q is not an http(s) URL", a)
		}
		r.addrs = append(r.addrs, u)
	}
	if r.base == nil {
		r.base = pooled(api.DefaultConfig().HttpClient.Transport, len(r.addrs))
	}
	if r.attempt <= 0 {
		r.attempt = DefaultCallerTimeout
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.probe = &http.Client{Transport: r.base, Timeout: 500 * time.Millisecond,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return r, nil
}

// Current is the address requests go to now.
func (r *Router) Current() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrs[r.cur].String()
}

// Addrs lists the addresses, in order of preference.
func (r *Router) Addrs() []string {
	out := make([]string, len(r.addrs))
	for i, u := range r.addrs {
		out[i] = u.String()
	}
	return out
}

type idempotentKey struct{}

// Idempotent marks ctx as carrying requests that change nothing in Vault
// (a transit sign, a token lookup, a capabilities check) although sent
// with POST: the Router may re-send them after an ambiguous failure.
func Idempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

// Backoff of election retries: 50 ms doubling to 400 ms, ±25% jitter.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 400 * time.Millisecond
	// maxAttempts bounds a request without a deadline.
	maxAttempts = 30
)

// RoundTrip implements http.RoundTripper.
func (r *Router) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	ctx := req.Context()
	safe := mayResend(req)
	failed := map[int]bool{} // addresses whose attempt got no answer
	wait := backoffMin
	spread := 0 // election retries go round the other nodes too
	for attempt := 1; ; attempt++ {
		idx, target := r.pickAt(spread)
		resp, sent, err := r.try(req, body, target)
		if err != nil && ctx.Err() != nil {
			return nil, err // the request's own budget is spent
		}
		retry, failover := classify(resp, err, sent, safe)
		if failover {
			spread = r.moveOn(ctx, idx, spread)
			if err != nil {
				failed[idx] = true
				if retry && len(failed) < len(r.addrs) && attempt < maxAttempts {
					continue // try the next address at once
				}
				return nil, err // every address failed, or a write's fate is unknown
			}
		}
		if !retry || !backOff(ctx, wait, attempt) {
			return answer(resp, err)
		}
		wait = min(2*wait, backoffMax)
		if !failover {
			spread++
		}
	}
}

// readBody reads and closes req's body (nil when it has none), so that each
// attempt can send it again.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	return body, err
}

// mayResend reports a request that changes nothing in Vault: a read, or a
// context marked with Idempotent.
func mayResend(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, "LIST":
		return true
	}
	return req.Context().Value(idempotentKey{}) != nil
}

// classify tells what to do after one attempt (sent: a connection was made
// for it, so Vault may have seen it): retry it, and/or fail over to the
// next address. A failed attempt that is retried goes at once to the next
// address; an answer that is retried, with backoff.
func classify(resp *http.Response, err error, sent, safe bool) (retry, failover bool) {
	switch {
	case err != nil && (!sent || isRefused(err)):
		// No connection (refused, or a connect that hung past the
		// attempt: a partition): Vault never saw the request.
		return true, true
	case err != nil:
		// Reset or timed out in flight: the node died or hangs. Move on;
		// re-send only what changes nothing (a write may have been
		// applied, and the lifecycle completes it from what Vault holds).
		return safe, true
	case sealed(resp):
		return true, true
	case noActive(resp):
		return true, false
	case resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode >= 500:
		return safe, false
	}
	return false, false
}

// moveOn fails over from addrs[idx] and returns the spread of the next
// attempt: 0 on the new current address, or one address further when idx
// was a retry's address (or the only one).
func (r *Router) moveOn(ctx context.Context, idx, spread int) int {
	if r.failover(ctx, idx) {
		return 0
	}
	return spread + 1
}

// backOff waits about wait (±25% jitter) before the next attempt. It
// reports false, at once or when ctx ends, when the request should rather
// end with its last answer: the budget would run out first, or attempt is
// the last one.
func backOff(ctx context.Context, wait time.Duration, attempt int) bool {
	d := wait/2 + rand.N(wait)
	if dl, ok := ctx.Deadline(); (ok && time.Until(dl) < d+50*time.Millisecond) || attempt >= maxAttempts {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// answer is the result of an attempt returned to the caller.
func answer(resp *http.Response, err error) (*http.Response, error) {
	if err != nil {
		return nil, err
	}
	return unredirect(resp), nil
}

// try sends one attempt to target, bounded by the attempt timeout, and
// returns the answer with its body read (so the attempt's context can end).
// sent reports whether a connection was made for it: when it was not, Vault
// never saw the request.
func (r *Router) try(req *http.Request, body []byte, target *url.URL) (resp *http.Response, sent bool, err error) {
	ctx, cancel := context.WithTimeout(req.Context(), r.attempt)
	defer cancel()
	var conn atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conn.Store(true) }})
	out := req.Clone(ctx)
	u := *req.URL
	u.Scheme, u.Host = target.Scheme, target.Host
	out.URL, out.Host = &u, ""
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	resp, err = r.base.RoundTrip(out)
	if err != nil {
		return nil, conn.Load(), err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, true, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	resp.Request = req
	if resp.StatusCode == http.StatusForbidden && r.onDenied != nil {
		r.onDenied(req.Header.Get(api.AuthHeaderName))
	}
	return resp, true, nil
}

// pickAt is the address offset places after the current one. A standby
// learns of a new leader only at its next leader check (up to a few
// seconds after the election) and meanwhile cannot forward: a retry on
// another node (the new active node, or a standby that already knows it)
// often succeeds sooner. The current address stays the preferred one.
func (r *Router) pickAt(offset int) (int, *url.URL) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := (r.cur + offset) % len(r.addrs)
	return i, r.addrs[i]
}

// failover moves away from addrs[from] (unless another request already
// did, or is doing so) to the first address, in order, whose sys/health
// says it is initialized and unsealed; when none is, to the next one in
// the list. It reports whether it moved. The other nodes are asked at once,
// outside the lock, within ctx and the probe timeout: a node cut off by a
// partition costs one probe timeout, and no request waits on another's
// probes.
func (r *Router) failover(ctx context.Context, from int) bool {
	r.mu.Lock()
	if r.cur != from || r.moving || len(r.addrs) == 1 {
		r.mu.Unlock()
		return false
	}
	r.moving = true
	r.mu.Unlock()
	up := r.probeAll(ctx, from)
	next := (from + 1) % len(r.addrs)
	for i, ok := range up {
		if ok {
			next = i
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.moving = false
	if r.cur != from {
		return false
	}
	r.log.Warn("vault address unavailable; moving on", "from", r.addrs[from].String(), "to", r.addrs[next].String())
	r.cur = next
	return true
}

// probeAll asks every address but skip (-1: none) for its health at once
// and reports, by index, which answered healthy.
func (r *Router) probeAll(ctx context.Context, skip int) []bool {
	up := make([]bool, len(r.addrs))
	var wg sync.WaitGroup
	for i, u := range r.addrs {
		if i == skip {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			up[i] = r.healthy(ctx, u)
		}()
	}
	wg.Wait()
	return up
}

// Watch keeps requests on the most preferred healthy address, checking
// every interval until ctx ends: it moves back to a more preferred address
// once it is healthy again, and away from the current one when it no
// longer answers healthy (a node cut off while keyd sends nothing).
func (r *Router) Watch(ctx context.Context, interval time.Duration) {
	if len(r.addrs) == 1 {
		return
	}
	clock.Every(ctx, r.clock, interval, func() { r.preferHealthy(ctx) })
}

// preferHealthy moves to the most preferred address that answers healthy,
// if it is not the current one; when none does, it stays.
func (r *Router) preferHealthy(ctx context.Context) {
	up := r.probeAll(ctx, -1)
	for i, ok := range up {
		if !ok {
			continue
		}
		r.mu.Lock()
		if i != r.cur && !r.moving {
			if i < r.cur {
				r.log.Info("vault address healthy again; moving back", "from", r.addrs[r.cur].String(), "to", r.addrs[i].String())
			} else {
				r.log.Warn("vault address unavailable; moving on", "from", r.addrs[r.cur].String(), "to", r.addrs[i].String())
			}
			r.cur = i
		}
		r.mu.Unlock()
		return
	}
}

// healthy asks u's sys/health whether the node is initialized and
// unsealed, standby or active (200 with standbyok), within ctx and the
// probe timeout.
func (r *Router) healthy(ctx context.Context, u *url.URL) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String()+"/v1/sys/health?standbyok=true&perfstandbyok=true", nil)
	if err != nil {
		return false
	}
	resp, err := r.probe.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// isRefused reports a connection that could not be made: Vault never saw
// the request.
func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func bodyHas(resp *http.Response, s string) bool {
	raw, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return bytes.Contains(raw, []byte(s))
}

// sealed: a 503 of a sealed node.
func sealed(resp *http.Response) bool {
	return resp.StatusCode == http.StatusServiceUnavailable && bodyHas(resp, "Vault is sealed")
}

// noActive: answers of a node that did not handle the request because it
// knows no active node (during an election) or is no longer active.
func noActive(resp *http.Response) bool {
	if resp.StatusCode < 500 {
		return false
	}
	for _, s := range []string{"active cluster node not found", "no active Vault instance found", "node is not active", "Vault is sealed"} {
		if bodyHas(resp, s) {
			return true
		}
	}
	return false
}

// unredirect turns a standby's redirect (its fallback when forwarding to
// the active node failed) into the 503 it means for keyd, which follows no
// redirect.
func unredirect(resp *http.Response) *http.Response {
	if resp.StatusCode/100 != 3 {
		return resp
	}
	msg := `{"errors":["standby could not forward the request to the active node"]}`
	resp.StatusCode, resp.Status = http.StatusServiceUnavailable, "503 Service Unavailable"
	resp.Header = http.Header{"Content-Type": {"application/json"}}
	resp.Body = io.NopCloser(strings.NewReader(msg))
	resp.ContentLength = int64(len(msg))
	return resp
}

// NewRoutedClient returns a Vault client (no token yet) whose requests go through
// a Router over addrs, each call bounded by timeout, without the client
// library's own retries (the Router's are aware of elections; the
// library's would re-send a rotate). Clones share the Router.
func NewRoutedClient(addrs []string, timeout time.Duration, log *slog.Logger) (*api.Client, *Router, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, nil, fmt.Errorf("vault config: %w", cfg.Error)
	}
	// One transport under every client: keyd's own and every caller's
	// clone share the Router, so its pool serves them all.
	base := pooled(cfg.HttpClient.Transport, len(addrs))
	r, err := NewRouter(RouterConfig{Addrs: addrs, Base: base, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	cfg.Address = r.addrs[0].String()
	cfg.Timeout = timeout
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("vault client: %w", err)
	}
	// After NewClient: it configures TLS on the library's own transport,
	// which the Router wraps.
	cfg.HttpClient.Transport = r
	cfg.HttpClient.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.ClearToken()
	return c, r, nil
}
