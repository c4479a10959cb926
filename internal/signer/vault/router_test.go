package vault

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
)

// fakeNode answers the first fails requests with status and body, then 200.
type fakeNode struct {
	srv      *httptest.Server
	hits     atomic.Int32
	fails    int32
	status   int
	body     string
	location string
}

func newFakeNode(t *testing.T, fails int32, status int, body string) *fakeNode {
	n := &fakeNode{fails: fails, status: status, body: body}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/sys/health" {
			if n.status == 503 && strings.Contains(n.body, "sealed") {
				w.WriteHeader(503)
				return
			}
			w.WriteHeader(200)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if string(b) != `{"x":1}` && r.Method == http.MethodPost {
			w.WriteHeader(400)
			return
		}
		if n.hits.Add(1) <= n.fails {
			if n.location != "" {
				w.Header().Set("Location", n.location)
			}
			w.WriteHeader(n.status)
			io.WriteString(w, n.body)
			return
		}
		io.WriteString(w, `{"data":{"ok":true}}`)
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func refusedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	return addr
}

func post(t *testing.T, r *Router, ctx context.Context) (int, time.Duration) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://placeholder/v1/transit/sign/k", strings.NewReader(`{"x":1}`))
	start := time.Now()
	resp, err := r.RoundTrip(req)
	if err != nil {
		return 0, time.Since(start)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

func TestRouter(t *testing.T) {
	budget := func(d time.Duration) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return ctx
	}
	t.Run("refused address: the next one, at once", func(t *testing.T) {
		good := newFakeNode(t, 0, 0, "")
		r, _ := NewRouter(RouterConfig{Addrs: []string{refusedAddr(t), good.srv.URL}})
		if got, _ := post(t, r, budget(2*time.Second)); got != 200 || r.Current() != good.srv.URL {
			t.Errorf("status %d, current %s", got, r.Current())
		}
	})
	t.Run("every address refuses: an error at once", func(t *testing.T) {
		r, _ := NewRouter(RouterConfig{Addrs: []string{refusedAddr(t), refusedAddr(t)}})
		if got, took := post(t, r, budget(2*time.Second)); got != 0 || took > 500*time.Millisecond {
			t.Errorf("status %d after %v, want an error at once", got, took)
		}
	})
	t.Run("sealed node: the next healthy one", func(t *testing.T) {
		sealedNode := newFakeNode(t, 1000, 503, `{"errors":["Vault is sealed"]}`)
		good := newFakeNode(t, 0, 0, "")
		r, _ := NewRouter(RouterConfig{Addrs: []string{sealedNode.srv.URL, good.srv.URL}})
		if got, _ := post(t, r, budget(2*time.Second)); got != 200 || r.Current() != good.srv.URL {
			t.Errorf("status %d, current %s", got, r.Current())
		}
	})
	t.Run("no active node: retried with backoff, writes included", func(t *testing.T) {
		n := newFakeNode(t, 3, 500, `{"errors":["local node not active but active cluster node not found"]}`)
		r, _ := NewRouter(RouterConfig{Addrs: []string{n.srv.URL}})
		if got, _ := post(t, r, budget(2*time.Second)); got != 200 || n.hits.Load() != 4 {
			t.Errorf("status %d after %d hits", got, n.hits.Load())
		}
	})
	t.Run("no active node past the budget: the 5xx before it ends", func(t *testing.T) {
		n := newFakeNode(t, 1000, 500, `{"errors":["local node not active but active cluster node not found"]}`)
		r, _ := NewRouter(RouterConfig{Addrs: []string{n.srv.URL}})
		got, took := post(t, r, budget(time.Second))
		if got != 500 || took > time.Second {
			t.Errorf("status %d after %v", got, took)
		}
	})
	t.Run("forwarding failed: a write is not re-sent", func(t *testing.T) {
		n := newFakeNode(t, 1000, 307, "")
		n.location = "http://127.0.0.1:1/v1/transit/keys/k/rotate"
		r, _ := NewRouter(RouterConfig{Addrs: []string{n.srv.URL}})
		if got, _ := post(t, r, budget(2*time.Second)); got != 503 || n.hits.Load() != 1 {
			t.Errorf("status %d after %d hits, want 503 after 1", got, n.hits.Load())
		}
	})
	t.Run("a standby that cannot forward yet: the retry goes to the other nodes", func(t *testing.T) {
		stuck := newFakeNode(t, 1000, 307, "")
		stuck.location = "http://127.0.0.1:1/v1/transit/sign/k"
		good := newFakeNode(t, 0, 0, "")
		r, _ := NewRouter(RouterConfig{Addrs: []string{stuck.srv.URL, refusedAddr(t), good.srv.URL}})
		got, took := post(t, r, Idempotent(budget(2*time.Second)))
		if got != 200 || took > time.Second || r.Current() != stuck.srv.URL {
			t.Errorf("status %d after %v, current %s; want 200 from the third node, the first still current", got, took, r.Current())
		}
	})
	t.Run("forwarding failed: a sign is re-sent", func(t *testing.T) {
		n := newFakeNode(t, 2, 307, "")
		n.location = "http://127.0.0.1:1/v1/transit/sign/k"
		r, _ := NewRouter(RouterConfig{Addrs: []string{n.srv.URL}})
		if got, _ := post(t, r, Idempotent(budget(2*time.Second))); got != 200 || n.hits.Load() != 3 {
			t.Errorf("status %d after %d hits", got, n.hits.Load())
		}
	})
}

// Watch moves back to the preferred address once it is healthy again.
func TestRouterWatchMovesBack(t *testing.T) {
	var sealedNow atomic.Bool
	sealedNow.Store(true)
	preferred := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sealedNow.Load() {
			w.WriteHeader(503)
			io.WriteString(w, `{"errors":["Vault is sealed"]}`)
			return
		}
		io.WriteString(w, `{"data":{}}`)
	}))
	t.Cleanup(preferred.Close)
	other := newFakeNode(t, 0, 0, "")
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r, _ := NewRouter(RouterConfig{Addrs: []string{preferred.URL, other.srv.URL}, Clock: clk})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, _ := post(t, r, ctx); got != 200 || r.Current() != other.srv.URL {
		t.Fatalf("status %d, current %s; want the other node", got, r.Current())
	}
	go r.Watch(ctx, 20*time.Millisecond)
	// tick lets the watcher's next check run to its end: the clock moves one
	// interval once the watcher sleeps, and the check is over when it
	// sleeps again.
	tick := func() {
		t.Helper()
		if !clk.WaitForWaiter(4 * time.Second) {
			t.Fatal("the watcher does not wait on the router's clock")
		}
		clk.Advance(20 * time.Millisecond)
		if !clk.WaitForWaiter(4 * time.Second) {
			t.Fatal("the watcher's check did not end")
		}
	}
	// Five checks of the watcher must leave the sealed node alone.
	for range 5 {
		tick()
	}
	if r.Current() != other.srv.URL {
		t.Fatal("moved back to a sealed node")
	}
	sealedNow.Store(false)
	tick()
	waitUntil(t, 4*time.Second, func() string { return "did not move back to the preferred node once healthy" },
		func() bool { return r.Current() == preferred.URL })
}
