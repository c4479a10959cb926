package vault

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blackhole is a fake dialer: a connect to a cut-off address hangs until
// its context ends, as a connect whose packets a network partition drops
// (no refusal ever comes back); other addresses are dialed for real.
type blackhole struct {
	mu  sync.Mutex
	cut map[string]bool // host:port
}

func (b *blackhole) set(hostport string, cut bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut == nil {
		b.cut = map[string]bool{}
	}
	b.cut[hostport] = cut
}

func (b *blackhole) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	b.mu.Lock()
	cut := b.cut[addr]
	b.mu.Unlock()
	if cut {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

func (b *blackhole) transport() *http.Transport {
	return &http.Transport{DialContext: b.dial, DisableKeepAlives: true}
}

func hostport(rawURL string) string { return strings.TrimPrefix(rawURL, "http://") }

// hangingNode accepts connections and never answers a request (a node that
// hangs, or whose answers a partition drops after the connection was made).
func hangingNode(t *testing.T) (url string, hits *atomic.Int32) {
	hits = &atomic.Int32{}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/sys/health" {
			hits.Add(1)
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv.URL, hits
}

// Issue 20 item 8: a node cut off by a partition (connects hang, nothing is
// refused) is left for the next address within the request's budget.
// Before, a connect that outlived the attempt was a plain deadline error
// that failed at once, and every request went to the cut-off node again.
func TestRouterPartition(t *testing.T) {
	const attempt = 200 * time.Millisecond
	budget := func(d time.Duration) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return ctx
	}
	newRouter := func(t *testing.T, bh *blackhole, addrs ...string) *Router {
		r, err := NewRouter(RouterConfig{Addrs: addrs, Attempt: attempt, Base: bh.transport()})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	t.Run("connect hangs on the preferred node: a sign moves on", func(t *testing.T) {
		bh := &blackhole{}
		cut, good := newFakeNode(t, 0, 0, ""), newFakeNode(t, 0, 0, "")
		bh.set(hostport(cut.srv.URL), true)
		r := newRouter(t, bh, cut.srv.URL, good.srv.URL)
		for i := range 3 {
			got, took := post(t, r, Idempotent(budget(2*time.Second)))
			if got != 200 || took > 2*attempt+time.Second || r.Current() != good.srv.URL {
				t.Fatalf("sign %d: status %d after %v, current %s; want 200 from the next node within the budget", i+1, got, took, r.Current())
			}
		}
		if cut.hits.Load() != 0 {
			t.Errorf("the cut-off node saw %d requests", cut.hits.Load())
		}
	})
	t.Run("connect hangs: a write is sent to the next node (Vault never saw it)", func(t *testing.T) {
		bh := &blackhole{}
		cut, good := newFakeNode(t, 0, 0, ""), newFakeNode(t, 0, 0, "")
		bh.set(hostport(cut.srv.URL), true)
		r := newRouter(t, bh, cut.srv.URL, good.srv.URL)
		if got, _ := post(t, r, budget(2*time.Second)); got != 200 || good.hits.Load() != 1 {
			t.Errorf("status %d, %d hits on the next node; want 200 after 1", got, good.hits.Load())
		}
	})
	t.Run("a node that accepts and never answers: a sign moves on", func(t *testing.T) {
		hung, hits := hangingNode(t)
		good := newFakeNode(t, 0, 0, "")
		r := newRouter(t, &blackhole{}, hung, good.srv.URL)
		got, took := post(t, r, Idempotent(budget(2*time.Second)))
		if got != 200 || took > 2*attempt+time.Second || hits.Load() != 1 || r.Current() != good.srv.URL {
			t.Errorf("status %d after %v (%d hits on the hung node), current %s", got, took, hits.Load(), r.Current())
		}
	})
	t.Run("a node that never answers a write: not re-sent, the next request goes elsewhere", func(t *testing.T) {
		hung, hits := hangingNode(t)
		good := newFakeNode(t, 0, 0, "")
		r := newRouter(t, &blackhole{}, hung, good.srv.URL)
		if got, _ := post(t, r, budget(2*time.Second)); got != 0 || good.hits.Load() != 0 {
			t.Fatalf("status %d, %d hits on the next node; want an error and the write not re-sent", got, good.hits.Load())
		}
		if r.Current() != good.srv.URL {
			t.Fatalf("current %s; want the next node", r.Current())
		}
		if got, _ := post(t, r, budget(2*time.Second)); got != 200 || hits.Load() != 1 {
			t.Errorf("next write: status %d (%d hits on the hung node)", got, hits.Load())
		}
	})
	t.Run("every node cut off: an error within the budget", func(t *testing.T) {
		bh := &blackhole{}
		a, b, c := newFakeNode(t, 0, 0, ""), newFakeNode(t, 0, 0, ""), newFakeNode(t, 0, 0, "")
		for _, n := range []*fakeNode{a, b, c} {
			bh.set(hostport(n.srv.URL), true)
		}
		r := newRouter(t, bh, a.srv.URL, b.srv.URL, c.srv.URL)
		const d = 700 * time.Millisecond
		got, took := post(t, r, Idempotent(budget(d)))
		if got != 0 || took > d+100*time.Millisecond {
			t.Errorf("status %d after %v; want an error within %v", got, took, d)
		}
	})
	t.Run("concurrent signs do not wait on one another's probes", func(t *testing.T) {
		bh := &blackhole{}
		cut, other, good := newFakeNode(t, 0, 0, ""), newFakeNode(t, 0, 0, ""), newFakeNode(t, 0, 0, "")
		bh.set(hostport(cut.srv.URL), true)
		bh.set(hostport(other.srv.URL), true)
		r := newRouter(t, bh, cut.srv.URL, other.srv.URL, good.srv.URL)
		var wg sync.WaitGroup
		var bad atomic.Int32
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if got, took := post(t, r, Idempotent(budget(2*time.Second))); got != 200 || took > 2*time.Second {
					bad.Add(1)
				}
			}()
		}
		wg.Wait()
		if bad.Load() != 0 || r.Current() != good.srv.URL {
			t.Errorf("%d of 20 signs failed or took the whole budget; current %s", bad.Load(), r.Current())
		}
	})
}

// Watch leaves a current address that no longer answers healthy (cut off
// while keyd sends nothing) for the most preferred healthy one, and moves
// back once the cut heals. Before, it only ever moved back.
func TestRouterWatchMovesAway(t *testing.T) {
	bh := &blackhole{}
	preferred, other := newFakeNode(t, 0, 0, ""), newFakeNode(t, 0, 0, "")
	r, err := NewRouter(RouterConfig{Addrs: []string{preferred.srv.URL, other.srv.URL}, Attempt: 200 * time.Millisecond, Base: bh.transport()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go r.Watch(ctx, 20*time.Millisecond)
	bh.set(hostport(preferred.srv.URL), true)
	waitUntil(t, 4*time.Second, func() string { return "did not leave the cut-off node" },
		func() bool { return r.Current() == other.srv.URL })
	bh.set(hostport(preferred.srv.URL), false)
	waitUntil(t, 4*time.Second, func() string { return "did not move back once the cut healed" },
		func() bool { return r.Current() == preferred.srv.URL })
	if got, _ := post(t, r, Idempotent(ctx)); got != 200 {
		t.Errorf("status %d after the heal", got)
	}
}
