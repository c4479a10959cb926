package propagation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/jwks"
	"github.com/openedx-keyd/keyd/internal/propagation"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// store keeps what the recorder writes, merged as the real stores do.
type store struct {
	mu  sync.Mutex
	obs []signer.Observation
}

func (s *store) SaveObservations(_ context.Context, obs []signer.Observation, forgetBefore time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.obs = signer.MergeObservations(s.obs, obs, forgetBefore)
	return nil
}

// TestOnlyAFetchThatReceivedAKeySetMakesAnInstanceLive (issue 20, item 5):
// JWKS requests are unauthenticated. A HEAD, or a GET with If-None-Match: *,
// naming an expected client and a made-up Keyd-Instance, received no key
// set: it must not make that instance live, or one such request per
// instance window holds a gated key until --activation-max-wait. A 304 for
// the real ETag counts as the document it names.
func TestOnlyAFetchThatReceivedAKeySetMakesAnInstanceLive(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC))
	rec := propagation.NewRecorder(clk)
	rec.Stored = func(c string) bool { return c == "ecommerce" }
	h := jwks.NewHandler(5 * time.Minute)
	h.Fetched = rec.Fetched
	st := &store{}

	// v2, gated on ecommerce, published beside the active v1.
	var keys []jwks.Key
	for v := 1; v <= 2; v++ {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, jwks.Key{KID: string(rune('a' + v)), Alg: "EdDSA", Public: pub, Version: v})
	}
	doc, _, err := h.Publish(keys)
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	k2 := signer.Key{Record: signer.Record{
		Version: 2, CreatedAt: now, ActivatesAt: now.Add(24 * time.Hour),
		ExpectedClients: []string{"ecommerce"}, InstanceWindow: time.Hour, ActivationMaxWait: 7 * 24 * time.Hour,
	}, HasRecord: true}

	fetch := func(method, instance, inm string) int {
		t.Helper()
		req := httptest.NewRequest(method, "/.well-known/jwks.json", nil)
		req.Header.Set("Keyd-Client", "ecommerce")
		req.Header.Set("Keyd-Instance", instance)
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	gate := func() rotation.GateStatus {
		t.Helper()
		if _, _, err := rec.Flush(ctx, st, 5*time.Minute, 24*time.Hour, discard); err != nil {
			t.Fatal(err)
		}
		st.mu.Lock()
		obs := rotation.Observed{Observations: append([]signer.Observation(nil), st.obs...)}
		st.mu.Unlock()
		return rotation.Gate(k2, &obs, clk.Now())
	}

	// The one real instance refreshes every 5 minutes (a GET, then
	// conditional GETs with the ETag); the forger sends a HEAD and a GET
	// with If-None-Match: * once per window, each under a made-up instance.
	clk.Advance(24 * time.Hour) // activates_at
	for i := range 6 {
		if c := fetch(http.MethodHead, "forged-head", ""); c != http.StatusOK {
			t.Fatalf("HEAD: %d", c)
		}
		if c := fetch(http.MethodGet, "forged-star", "*"); c != http.StatusNotModified {
			t.Fatalf("GET If-None-Match *: %d", c)
		}
		if c := fetch(http.MethodHead, "forged-etag", doc.ETag); c != http.StatusNotModified {
			t.Fatalf("HEAD If-None-Match etag: %d", c)
		}
		inm := doc.ETag
		if i == 0 {
			inm = ""
		}
		if c := fetch(http.MethodGet, "web-1:42", inm); c != http.StatusOK && c != http.StatusNotModified {
			t.Fatalf("GET: %d", c)
		}
		g := gate()
		if !g.Activate || !g.Confirmed {
			t.Fatalf("at activates_at + %d min: ecommerce not confirmed (%+v): a fetch that received no key set holds the key", i*5, g.Clients)
		}
		if c := g.Clients[0]; c.Live != 1 || c.Holding != 1 {
			t.Fatalf("live %d holding %d, want only the real instance (1, 1): %+v", c.Live, c.Holding, c.Instances)
		}
		clk.Advance(5 * time.Minute)
	}
}
