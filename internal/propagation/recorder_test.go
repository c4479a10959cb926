package propagation

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer"
)

type saver struct {
	mu     sync.Mutex
	writes [][]signer.Observation
}

func (s *saver) SaveObservations(_ context.Context, obs []signer.Observation, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes = append(s.writes, obs)
	return nil
}

func (s *saver) last() []signer.Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes[len(s.writes)-1]
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestFlushWritesOnlyWhatTheContractAllows: an instance is written when its
// highest version grows or its stored last fetch is older than max-age, not
// on every fetch.
func TestFlushWritesOnlyWhatTheContractAllows(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	r, s := NewRecorder(clk), &saver{}
	const maxAge, forget = 5 * time.Minute, 24 * time.Hour
	flush := func() (int, bool) {
		t.Helper()
		n, grew, err := r.Flush(context.Background(), s, maxAge, forget, quiet)
		if err != nil {
			t.Fatal(err)
		}
		return n, grew
	}
	r.Record("ecommerce", "e1", 1, clk.Now())
	if n, grew := flush(); n != 1 || !grew || s.last()[0].MaxVersion != 1 {
		t.Fatalf("first fetch: wrote %d grew %v", n, grew)
	}
	clk.Advance(time.Minute)
	r.Record("ecommerce", "e1", 1, clk.Now())
	if n, _ := flush(); n != 0 {
		t.Errorf("a fetch within max-age with the same version was written")
	}
	r.Record("ecommerce", "e1", 2, clk.Now())
	if n, grew := flush(); n != 1 || !grew || s.last()[0].MaxVersion != 2 {
		t.Errorf("a grown version was not written at once: %d %v", n, grew)
	}
	clk.Advance(maxAge)
	r.Record("ecommerce", "e1", 2, clk.Now())
	if n, grew := flush(); n != 1 || grew || !s.last()[0].LastFetch.Equal(clk.Now()) {
		t.Errorf("a fetch once the stored one is max-age old was not written: %d %v", n, grew)
	}
	if n, _ := flush(); n != 0 {
		t.Errorf("nothing new, but %d written", n)
	}
	clk.Advance(forget + time.Second)
	if n, _ := flush(); n != 0 || len(r.m) != 0 {
		t.Errorf("a silent instance is kept: %d written, %d held", n, len(r.m))
	}
}

// TestFetched: headers are validated.
func TestFetched(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	r := NewRecorder(clk)
	req := func(client, inst string) {
		q := httptest.NewRequest("GET", "/.well-known/jwks.json", nil)
		if client != "" {
			q.Header.Set("Keyd-Client", client)
		}
		if inst != "" {
			q.Header.Set("Keyd-Instance", inst)
		}
		r.Fetched(q, 3)
	}
	req("ecommerce", "")     // no instance
	req("", "i1")            // no client
	req("ecommerce", "a b")  // bad instance
	req("ec/commerce", "i1") // bad client
	req("ecommerce", string(make([]byte, 65)))
	if len(r.m) != 0 {
		t.Fatalf("invalid requests recorded: %v", r.m)
	}
	req("ecommerce", "host-1:42")
	q := httptest.NewRequest("GET", "/", nil)
	q.Header["Keyd-Client"] = []string{"ecommerce"}
	q.Header["Keyd-Instance"] = []string{"a", "b"} // repeated: ambiguous, ignored
	r.Fetched(q, 3)
	if len(r.m) != 1 {
		t.Fatalf("recorded %d instances, want 1", len(r.m))
	}
}

// TestRecorderBounded: forged instance names cannot grow memory without
// limit; concurrent fetches are safe.
func TestRecorderBounded(t *testing.T) {
	r := NewRecorder(nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range MaxInstances/2 + 10 {
				r.Record("c", strconv.Itoa(g)+"-"+strconv.Itoa(i), i, time.Now())
				r.Record("c", "shared", i, time.Now())
			}
		}()
	}
	wg.Wait()
	if len(r.m) != MaxInstances || !r.full.Load() {
		t.Errorf("held %d instances (limit %d)", len(r.m), MaxInstances)
	}
}

// TestOnlyStoredClientsAreWritten: fetches of clients that are not
// expected are never written (nothing reads them).
func TestOnlyStoredClientsAreWritten(t *testing.T) {
	r, s := NewRecorder(nil), &saver{}
	r.Stored = func(c string) bool { return c == "ecommerce" }
	r.Record("ecommerce", "e1", 1, time.Now())
	r.Record("forged", "f1", 1, time.Now())
	n, _, err := r.Flush(context.Background(), s, time.Minute, time.Hour, quiet)
	if err != nil || n != 1 || s.last()[0].Client != "ecommerce" {
		t.Errorf("wrote %d (%v): %+v", n, err, s.writes)
	}
}

// TestForgedClientsCannotCrowdOutExpectedOnes: JWKS requests are
// unauthenticated, so anyone can send Keyd-Client names. Fetches of clients
// that are not stored must not use up the instance bound (an expected
// client's new instance would go unrecorded) nor grow memory without bound.
func TestForgedClientsCannotCrowdOutExpectedOnes(t *testing.T) {
	r, s := NewRecorder(nil), &saver{}
	r.Stored = func(c string) bool { return c == "ecommerce" }
	now := time.Now()
	for i := range MaxInstances + 10 {
		r.Record("forged-"+strconv.Itoa(i), "f", 1, now)
	}
	r.Record("ecommerce", "e-new", 2, now)
	n, _, err := r.Flush(context.Background(), s, time.Minute, time.Hour, quiet)
	if err != nil || n != 1 || s.last()[0].Instance != "e-new" {
		t.Fatalf("wrote %d (%v): the expected client's instance was not recorded", n, err)
	}
	for i := range 10 * MaxOtherClients {
		r.Record("more-forged-"+strconv.Itoa(i), "f", 1, now)
	}
	if _, _, err := r.Flush(context.Background(), s, time.Minute, time.Hour, quiet); err != nil {
		t.Fatal(err)
	}
	if len(r.m) > 1 || len(r.seenClients) > 2*MaxOtherClients {
		t.Errorf("holds %d instances and %d client names for one expected instance", len(r.m), len(r.seenClients))
	}
}

// TestClientWithoutInstanceIsLogged: a fetch with a valid Keyd-Client and no
// (or no valid) Keyd-Instance is logged once per name, as operations.md's
// "Listing the expected clients" says, but never recorded or stored.
func TestClientWithoutInstanceIsLogged(t *testing.T) {
	for _, stored := range []bool{false, true} {
		r, s := NewRecorder(nil), &saver{}
		if !stored {
			r.Stored = func(string) bool { return false }
		}
		var logged strings.Builder
		log := slog.New(slog.NewJSONHandler(&logged, nil))
		fetch := func(client, inst string) {
			q := httptest.NewRequest("GET", "/.well-known/jwks.json", nil)
			q.Header.Set("Keyd-Client", client)
			if inst != "" {
				q.Header.Set("Keyd-Instance", inst)
			}
			r.Fetched(q, 3)
		}
		fetch("discovery", "")
		fetch("discovery", "a b") // not a valid instance
		fetch("ec/commerce", "")  // not a valid client: ignored
		n, _, err := r.Flush(context.Background(), s, time.Minute, time.Hour, log)
		fetch("discovery", "")
		if _, _, err := r.Flush(context.Background(), s, time.Minute, time.Hour, log); err != nil {
			t.Fatal(err)
		}
		if err != nil || n != 0 || len(r.m) != 0 {
			t.Errorf("stored=%v: wrote %d (%v), holds %d instances; want nothing recorded", stored, n, err, len(r.m))
		}
		if got := strings.Count(logged.String(), `"msg":"jwks fetched by a client","client":"discovery"`); got != 1 {
			t.Errorf("stored=%v: logged discovery %d times, want once:\n%s", stored, got, logged.String())
		}
		if strings.Contains(logged.String(), "commerce") {
			t.Errorf("stored=%v: logged an invalid client name:\n%s", stored, logged.String())
		}
	}
}
