package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/server"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// events records the lifecycle events the manager sends.
type events struct {
	mu  sync.Mutex
	all []rotation.Event
}

func (e *events) Emit(_ context.Context, ev rotation.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
	return nil
}

func (e *events) of(typ audit.Type) []rotation.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []rotation.Event
	for _, ev := range e.all {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// gatedEnv expects ecommerce and notes, with a 1h instance window and a 48h
// max wait.
func gatedEnv(t *testing.T) (*testEnv, *events) {
	ev := &events{}
	e := newEnv(t, signer.ES256, true, func(c *config.Config, w *server.Wiring) {
		c.ExpectedClients = []string{"ecommerce", "notes"}
		c.InstanceWindow = time.Hour
		c.ActivationMaxWait = 48 * time.Hour
		w.Events = ev
	})
	return e, ev
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// metricValue is the value of an unlabelled metric on /metrics.
func metricValue(t *testing.T, e *testEnv, name string) string {
	t.Helper()
	for _, line := range strings.Split(string(e.get(t, "/metrics", "").body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return ""
}

// fetch is one JWKS request of an IDA instance, plus header pairs.
func (e *testEnv) fetch(t *testing.T, client, instance string, header ...string) result {
	t.Helper()
	r := e.do(t, http.MethodGet, api.JWKSPath, "", nil, append([]string{"Keyd-Client", client, "Keyd-Instance", instance}, header...)...)
	if r.status != http.StatusOK && r.status != http.StatusNotModified {
		t.Fatalf("jwks fetch = %d %s", r.status, r.body)
	}
	return r
}

// flushTick stores the recorded fetches and runs the lifecycle.
func (e *testEnv) flushTick(t *testing.T) {
	t.Helper()
	if _, _, err := e.recorder.Flush(context.Background(), e.observed, 5*time.Minute, 24*time.Hour, discard()); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
}

type keysAnswer struct {
	Keys []struct {
		Version     int
		State       string
		ActivatesAt string  `json:"activates_at"`
		RetiresAt   *string `json:"retires_at"`
		WaitingFor  []struct {
			Client  string
			Holding int `json:"instances_holding"`
			Live    int `json:"instances_live"`
		} `json:"waiting_for"`
	}
}

type propagationAnswer struct {
	Pending *struct {
		KID         string
		Version     int
		ActivatesAt string `json:"activates_at"`
		Confirmed   bool
		Gated       bool
	}
	Clients []struct {
		Client      string
		Confirmed   bool
		ConfirmedBy *string `json:"confirmed_by"`
		Instances   []struct {
			Instance   string
			LastFetch  string `json:"last_fetch"`
			MaxVersion int    `json:"max_version"`
		}
	}
}

func (e *testEnv) signKID(t *testing.T) string {
	t.Helper()
	r := e.post(t, "/v1/sign", signerTok, signBody("", ""))
	return decode[struct{ KID string }](t, r).KID
}

// TestGatedActivation: a gated key waits past activates_at while an
// instance lags (and does not sign, although the rules' time has come),
// an admin confirms the static client, the lagging instance's 304 for the
// new ETag releases it; activates_at then shows the actual activation and
// the previous key retires from it.
func TestGatedActivation(t *testing.T) {
	e, ev := gatedEnv(t)
	oldKID := e.signKID(t)
	rot := decode[struct{ Version int }](t, e.post(t, "/v1/rotate", adminTok, ""))
	if rot.Version != 2 {
		t.Fatalf("rotate made version %d", rot.Version)
	}
	e.clk.Advance(24*time.Hour + time.Second) // past activates_at
	newETag := e.fetch(t, "ecommerce", "e1:1").header.Get("ETag")
	// e2 lags: it was served the previous document (by another replica
	// whose snapshot had not caught up with the rotation yet).
	lag := signer.Observation{Client: "ecommerce", Instance: "e2:1", LastFetch: e.clk.Now().UTC(), MaxVersion: 1}
	if err := e.observed.SaveObservations(context.Background(), []signer.Observation{lag}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	e.fetch(t, "ecommerce", "forged", "If-None-Match", "*") // received no key set: not recorded (issue 20, item 5)
	e.flushTick(t)

	keys := decode[keysAnswer](t, e.get(t, "/v1/keys", auditorTok))
	if k := keys.Keys[1]; k.State != "pending" || len(k.WaitingFor) != 2 || k.WaitingFor[0].Client != "ecommerce" || k.WaitingFor[0].Holding != 1 || k.WaitingFor[0].Live != 2 {
		t.Fatalf("pending key: %+v", k)
	}
	if kid := e.signKID(t); kid != oldKID {
		t.Fatal("the gated key signs before its clients are confirmed")
	}
	if got := metricValue(t, e, "keyd_propagation_unconfirmed_clients"); got != "2" {
		t.Errorf("unconfirmed clients metric = %s, want 2", got)
	}
	p := decode[propagationAnswer](t, e.get(t, "/v1/propagation", adminTok))
	if p.Pending == nil || p.Pending.Version != 2 || p.Pending.Confirmed || !p.Pending.Gated || len(p.Clients) != 2 ||
		p.Clients[0].ConfirmedBy != nil || len(p.Clients[0].Instances) != 2 || len(p.Clients[1].Instances) != 0 {
		t.Fatalf("propagation: %+v", p)
	}

	// notes reads a static setting: an admin confirms it after its redeploy.
	r := e.post(t, "/v1/propagation/confirm", adminTok, `{"client":"notes","version":2}`)
	p = decode[propagationAnswer](t, r)
	if p.Clients[1].ConfirmedBy == nil || *p.Clients[1].ConfirmedBy != "admin" || p.Pending.Confirmed {
		t.Fatalf("after confirming notes: %+v", p)
	}
	// The lagging instance revalidates: a 304 for the new ETag counts as the new document.
	if r := e.fetch(t, "ecommerce", "e2:1", "If-None-Match", newETag); r.status != http.StatusNotModified {
		t.Fatalf("revalidation = %d", r.status)
	}
	e.clk.Advance(time.Minute)
	actual := e.clk.Now().UTC().Truncate(time.Second)
	e.flushTick(t)

	keys = decode[keysAnswer](t, e.get(t, "/v1/keys", auditorTok))
	if k := keys.Keys[1]; k.State != "active" || k.ActivatesAt != actual.Format(time.RFC3339) {
		t.Fatalf("released key: %+v, want active from %s", k, actual)
	}
	if k := keys.Keys[0]; k.RetiresAt == nil || *k.RetiresAt != actual.Add(time.Hour+2*time.Minute).Format(time.RFC3339) {
		t.Errorf("previous key retires at %v, want the actual activation + retire-after", k.RetiresAt)
	}
	if kid := e.signKID(t); kid == oldKID {
		t.Error("the released key does not sign")
	}
	var reasons []string
	for _, x := range ev.of(audit.PropagationConfirmed) {
		reasons = append(reasons, x.Reason)
	}
	slices.Sort(reasons)
	if want := []string{"client ecommerce confirmed by fetch", "client notes confirmed by admin"}; !slices.Equal(reasons, want) {
		t.Errorf("propagation_confirmed reasons %q, want %q", reasons, want)
	}
	if len(ev.of(audit.ActivationUnconfirmed)) != 0 || len(ev.of(audit.Activated)) != 2 {
		t.Errorf("events: %+v", ev.all)
	}
	if got := metricValue(t, e, "keyd_propagation_unconfirmed_clients"); got != "0" {
		t.Errorf("unconfirmed clients metric = %s, want 0", got)
	}
	// Confirming again (or for an active key) changes nothing and is no error.
	if r := e.post(t, "/v1/propagation/confirm", adminTok, `{"client":"notes","version":2}`); r.status != http.StatusOK {
		t.Errorf("second confirmation = %d %s", r.status, r.body)
	}
}

// TestActivationMaxWait: nobody confirms; the key activates at activates_at
// + max wait with an activation_unconfirmed event naming the clients.
func TestActivationMaxWait(t *testing.T) {
	e, ev := gatedEnv(t)
	e.post(t, "/v1/rotate", adminTok, "")
	e.clk.Advance(24*time.Hour + 47*time.Hour)
	e.fetch(t, "ecommerce", "e1:1")
	e.flushTick(t)
	if k := decode[keysAnswer](t, e.get(t, "/v1/keys", auditorTok)).Keys[1]; k.State != "pending" {
		t.Fatalf("before the max wait: %+v", k)
	}
	// activates_at (rotation + 24h) + 48h max wait is 1h away.
	if got := metricValue(t, e, "keyd_propagation_deadline_seconds"); got != "3600" {
		t.Errorf("keyd_propagation_deadline_seconds = %s an hour before the max wait, want 3600", got)
	}
	e.clk.Advance(time.Hour + time.Second)
	e.flushTick(t)
	if k := decode[keysAnswer](t, e.get(t, "/v1/keys", auditorTok)).Keys[1]; k.State != "active" {
		t.Fatalf("after the max wait: %+v", k)
	}
	if got := metricValue(t, e, "keyd_propagation_deadline_seconds"); got != "0" {
		t.Errorf("keyd_propagation_deadline_seconds = %s with no key waiting, want 0", got)
	}
	un := ev.of(audit.ActivationUnconfirmed)
	if len(un) != 1 || un[0].Version != 2 || !strings.HasSuffix(un[0].Reason, "notes") || strings.Contains(un[0].Reason, "ecommerce") {
		t.Errorf("activation_unconfirmed events: %+v", un)
	}
}

// TestEmergencyNotGated: an emergency key signs at once although nobody
// holds it.
func TestEmergencyNotGated(t *testing.T) {
	e, _ := gatedEnv(t)
	old := e.signKID(t)
	e.post(t, "/v1/rotate", adminTok, `{"emergency":true,"reason":"leak"}`)
	if e.signKID(t) == old {
		t.Error("the emergency key waits for its clients")
	}
}

// TestForgedPropagationHeaders: header values outside [A-Za-z0-9._:-]{1,64}
// are ignored, the JWKS is served all the same; a request without
// Keyd-Instance is not recorded.
func TestForgedPropagationHeaders(t *testing.T) {
	e, _ := gatedEnv(t)
	for _, h := range [][2]string{
		{"ecommerce", strings.Repeat("i", 65)}, {"ecommerce", "has space"}, {"ecommerce", "semi;colon"}, {"ecommerce", "ünïcode"},
		{"e/../x", "i1"}, {strings.Repeat("c", 65), "i1"}, {"", "i1"}, {"ecommerce", ""},
	} {
		r := e.do(t, http.MethodGet, api.JWKSPath, "", nil, "Keyd-Client", h[0], "Keyd-Instance", h[1])
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"keys"`) {
			t.Errorf("forged %q: %d %s", h, r.status, r.body)
		}
	}
	e.do(t, http.MethodGet, api.JWKSPath, "", nil, "Keyd-Client", "ecommerce") // no instance: not recorded
	if n, _, err := e.recorder.Flush(context.Background(), e.observed, time.Minute, time.Hour, discard()); err != nil || n != 0 {
		t.Errorf("forged headers recorded: %d, %v", n, err)
	}
}

// TestPropagationErrors: every error of the new routes.
func TestPropagationErrors(t *testing.T) {
	e, _ := gatedEnv(t)
	const confirm = "/v1/propagation/confirm"
	tests := []struct {
		name, method, path, token, body, ctype string
		status                                 int
		code                                   string
	}{
		{"malformed JSON", "POST", confirm, adminTok, `{"client":`, "application/json", 400, "invalid_json"},
		{"empty body", "POST", confirm, adminTok, ``, "application/json", 400, "invalid_json"},
		{"not an object", "POST", confirm, adminTok, `["notes",2]`, "application/json", 400, "invalid_request"},
		{"unknown member", "POST", confirm, adminTok, `{"client":"notes","version":2,"force":true}`, "application/json", 400, "unknown_member"},
		{"member in another case", "POST", confirm, adminTok, `{"Client":"notes","version":2}`, "application/json", 400, "unknown_member"},
		{"duplicated member", "POST", confirm, adminTok, `{"client":"notes","client":"x","version":2}`, "application/json", 400, "duplicate_member"},
		{"version a string", "POST", confirm, adminTok, `{"client":"notes","version":"2"}`, "application/json", 400, "invalid_request"},
		{"version a fraction", "POST", confirm, adminTok, `{"client":"notes","version":1.5}`, "application/json", 400, "invalid_request"},
		{"version zero", "POST", confirm, adminTok, `{"client":"notes","version":0}`, "application/json", 400, "invalid_request"},
		{"version missing", "POST", confirm, adminTok, `{"client":"notes"}`, "application/json", 400, "invalid_request"},
		{"client missing", "POST", confirm, adminTok, `{"version":1}`, "application/json", 400, "invalid_request"},
		{"client a number", "POST", confirm, adminTok, `{"client":7,"version":1}`, "application/json", 400, "invalid_request"},
		{"confirm without token", "POST", confirm, "", `{"client":"notes","version":1}`, "application/json", 401, "unauthenticated"},
		{"confirm unknown token", "POST", confirm, "nope", `{"client":"notes","version":1}`, "application/json", 401, "unauthenticated"},
		{"confirm as auditor", "POST", confirm, auditorTok, `{"client":"notes","version":1}`, "application/json", 403, "forbidden"},
		{"confirm as signer", "POST", confirm, signerTok, `{"client":"notes","version":1}`, "application/json", 403, "forbidden"},
		{"confirm as text/plain", "POST", confirm, adminTok, `{"client":"notes","version":1}`, "text/plain", 415, "unsupported_media_type"},
		{"confirm without content type", "POST", confirm, adminTok, `{"client":"notes","version":1}`, "", 415, "unsupported_media_type"},
		{"confirm too large", "POST", confirm, adminTok, `{"client":"` + strings.Repeat("x", api.MaxBody) + `"}`, "application/json", 413, "body_too_large"},
		{"client not expected", "POST", confirm, adminTok, `{"client":"discovery","version":1}`, "application/json", 422, "unknown_client"},
		{"version not published", "POST", confirm, adminTok, `{"client":"notes","version":9}`, "application/json", 422, "unknown_version"},
		{"get without token", "GET", "/v1/propagation", "", "", "", 401, "unauthenticated"},
		{"get unknown token", "GET", "/v1/propagation", "nope", "", "", 401, "unauthenticated"},
		{"get as signer", "GET", "/v1/propagation", signerTok, "", "", 403, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.ctype != "" {
				hdr = []string{"Content-Type", tt.ctype}
			}
			var body *strings.Reader
			if tt.method == "POST" {
				body = strings.NewReader(tt.body)
			}
			var r result
			if body != nil {
				r = e.do(t, tt.method, tt.path, tt.token, body, hdr...)
			} else {
				r = e.do(t, tt.method, tt.path, tt.token, nil, hdr...)
			}
			got := decode[struct{ Error string }](t, result{status: 200, body: r.body})
			if r.status != tt.status || got.Error != tt.code {
				t.Errorf("got %d %q, want %d %q (%s)", r.status, got.Error, tt.status, tt.code, r.body)
			}
		})
	}
	// Auditor and admin may read it; without a pending key, pending is null.
	for _, tok := range []string{auditorTok, adminTok} {
		p := decode[propagationAnswer](t, e.get(t, "/v1/propagation", tok))
		if p.Pending != nil || len(p.Clients) != 2 || p.Clients[0].Confirmed {
			t.Errorf("no pending key: %+v", p)
		}
	}
}

// TestFetchConfirmationStoredFromActivatesAt: before activates_at the
// fetches may show a client confirmed, but that is not stored: an instance
// whose fetch reaches the store late (from another replica) still holds
// the key back.
func TestFetchConfirmationStoredFromActivatesAt(t *testing.T) {
	e, ev := gatedEnv(t)
	e.post(t, "/v1/rotate", adminTok, "")
	e.fetch(t, "ecommerce", "e1")
	e.post(t, "/v1/propagation/confirm", adminTok, `{"client":"notes","version":2}`)
	e.flushTick(t)
	if n := len(ev.of(audit.PropagationConfirmed)); n != 1 {
		t.Fatalf("%d confirmations stored before activates_at, want only the admin's", n)
	}
	e.recorder.Record("ecommerce", "e2", 1, e.clk.Now()) // fetched before the rotation, stored late
	e.clk.Advance(24*time.Hour + time.Second)
	e.fetch(t, "ecommerce", "e1")
	e.recorder.Record("ecommerce", "e2", 1, e.clk.Now()) // served version 1 again (by a replica that lags): alive, holding version 1
	e.flushTick(t)
	if k := decode[keysAnswer](t, e.get(t, "/v1/keys", auditorTok)).Keys[1]; k.State != "pending" {
		t.Fatalf("the key activated while e2 lags: %+v", k)
	}
}

// TestCorruptObservations: a corrupt observations file in the data dir (a
// bad restore, a hand edit) is set aside and reported like a bad key file:
// it neither stalls the lifecycle (no rotation, no activation, /readyz
// stale) nor makes the propagation routes answer 500; a 500 is never the
// answer of a propagation route.
func TestCorruptObservations(t *testing.T) {
	e, _ := gatedEnv(t)
	e.post(t, "/v1/rotate", adminTok, "")
	e.fetch(t, "ecommerce", "e1")
	e.flushTick(t)
	path := filepath.Join(e.dir, "propagation", "observations.json")
	if err := os.WriteFile(path, []byte(`{"observations":[{"client":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.get(t, "/v1/propagation", adminTok); r.status != http.StatusOK {
		t.Errorf("GET /v1/propagation = %d %s", r.status, r.body)
	}
	if r := e.post(t, "/v1/propagation/confirm", adminTok, `{"client":"notes","version":2}`); r.status != http.StatusOK {
		t.Errorf("confirm = %d %s", r.status, r.body)
	}
	if err := e.mgr.Tick(context.Background()); err != nil {
		t.Errorf("Tick with a corrupt observations file: %v", err)
	}
	e.fetch(t, "ecommerce", "e1")
	if _, _, err := e.recorder.Flush(context.Background(), e.observed, 5*time.Minute, 24*time.Hour, discard()); err != nil {
		t.Errorf("the fetches are never stored again: %v", err)
	}
	if q, _ := os.ReadDir(filepath.Join(e.dir, "quarantine")); len(q) != 1 {
		t.Errorf("quarantine holds %d files, want the corrupt observations file", len(q))
	}
}

// TestPropagationStoreFailure: a store that cannot be read is a 503 with
// the contract's error body, never a 500.
func TestPropagationStoreFailure(t *testing.T) {
	e, _ := gatedEnv(t)
	e.post(t, "/v1/rotate", adminTok, "")
	if _, err := os.ReadFile("/proc/self/mem"); err == nil {
		t.Skip("no file that fails to read with an I/O error here")
	}
	path := filepath.Join(e.dir, "propagation", "observations.json")
	_ = os.Remove(path)
	// Fault injection: reads fail (EIO). (A directory in its place is a
	// bad file, set aside: TestBadPropagationFilesAreSetAside.)
	if err := os.Symlink("/proc/self/mem", path); err != nil {
		t.Fatal(err)
	}
	checkError(t, e.get(t, "/v1/propagation", adminTok), http.StatusServiceUnavailable, "propagation_unavailable")
	checkError(t, e.post(t, "/v1/propagation/confirm", adminTok, `{"client":"notes","version":2}`), http.StatusServiceUnavailable, "propagation_unavailable")
}
