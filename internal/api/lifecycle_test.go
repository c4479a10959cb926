package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/claims"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/issue"
	"github.com/openedx-keyd/keyd/internal/jwks"
	"github.com/openedx-keyd/keyd/internal/metrics"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// Tests for issue 12 items 1 and 3 through the HTTP surface.

// faultBackend is the local backend with injected faults: Keys stalls while
// a stall is set (a slow disk or Vault KV under the lifecycle loop), writes
// fail with ENOSPC while full is set (a full data dir: portable, and root
// cannot bypass it), Create fails while noCreate is set. It records when
// each signature was made and when each destruction began.
type faultBackend struct {
	*local.Backend
	stall    atomic.Pointer[chan struct{}]
	stalled  atomic.Int64 // Keys calls that met a stall
	full     atomic.Bool
	noCreate atomic.Bool

	mu        sync.Mutex
	signed    []signature
	destroyed map[int]time.Time // version → when its destruction began
}

type signature struct {
	version int
	at      time.Time // when the backend had made it
}

var errNoSpace = fmt.Errorf("write: %w", syscall.ENOSPC)

func (f *faultBackend) Keys(ctx context.Context) ([]signer.Key, error) {
	if ch := f.stall.Load(); ch != nil {
		f.stalled.Add(1)
		<-*ch
	}
	return f.Backend.Keys(ctx)
}

func (f *faultBackend) SaveIntent(ctx context.Context, in signer.Intent) error {
	if f.full.Load() {
		return errNoSpace
	}
	return f.Backend.SaveIntent(ctx, in)
}

func (f *faultBackend) Create(ctx context.Context, rec signer.Record) (signer.Key, error) {
	if f.full.Load() || f.noCreate.Load() {
		return signer.Key{}, errNoSpace
	}
	return f.Backend.Create(ctx, rec)
}

func (f *faultBackend) Sign(ctx context.Context, cred signer.Credential, v int, alg signer.Algorithm, input []byte) ([]byte, error) {
	sig, err := f.Backend.Sign(ctx, cred, v, alg, input)
	if err == nil {
		at := time.Now()
		f.mu.Lock()
		f.signed = append(f.signed, signature{v, at})
		f.mu.Unlock()
	}
	return sig, err
}

func (f *faultBackend) DestroyBelow(ctx context.Context, v int) error {
	keys, _ := f.Backend.Keys(ctx)
	at := time.Now()
	f.mu.Lock()
	for _, k := range keys {
		if _, ok := f.destroyed[k.Version]; k.Version < v && !ok {
			f.destroyed[k.Version] = at
		}
	}
	f.mu.Unlock()
	return f.Backend.DestroyBelow(ctx, v)
}

// switchEvents is an audit trail that can refuse events (on the full disk).
type switchEvents struct {
	fail   atomic.Bool
	mu     sync.Mutex
	events []rotation.Event
}

func (s *switchEvents) Emit(_ context.Context, e rotation.Event) error {
	if s.fail.Load() {
		return errNoSpace
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
	return nil
}

func (s *switchEvents) count(typ audit.Type) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// faultEnv serves api.New over a faultBackend, with clk and rules, after the
// first tick (the bootstrap key).
func faultEnv(t *testing.T, clk clock.Clock, rules rotation.Rules, refresh time.Duration) (*testEnv, *faultBackend, *switchEvents) {
	t.Helper()
	dir := t.TempDir()
	lb, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	fb := &faultBackend{Backend: lb, destroyed: map[int]time.Time{}}
	tokens := map[string]string{"KEYD_SIGNER_TOKEN": signerTok, "KEYD_ADMIN_TOKEN": adminTok, "KEYD_AUDITOR_TOKEN": auditorTok}
	authz, _, err := auth.LoadLocalTokens(dir, func(k string) string { return tokens[k] })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	handler := jwks.NewHandler(time.Second)
	ev := &switchEvents{}
	mgr, err := rotation.New(rotation.Config{Backend: fb, Rules: rules, Algorithm: signer.ES256, Clock: clk,
		Events: ev, Logger: log, Metrics: m, Refresh: refresh, OnChange: api.PublishKeys(handler, log)})
	if err != nil {
		t.Fatal(err)
	}
	metrics.WatchLifecycle(reg, mgr, clk)
	if err := mgr.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	env := &testEnv{mgr: mgr, jwks: handler}
	if f, ok := clk.(*clock.Fake); ok {
		env.clk = f
	}
	env.handler = api.New(api.Config{
		Auth: authz, Backend: fb, Lifecycle: mgr, JWKS: handler, Metrics: m, Gatherer: reg, Logger: log,
		Issuer: issue.New(issue.Config{Backend: fb, Lifecycle: mgr, Clock: clk, Metrics: m, Logger: log,
			Policy: claims.Policy{Issuers: []string{issuer}, MaxLifetime: time.Hour, ClockSkew: time.Minute}}),
	})
	srv := httptest.NewServer(env.handler)
	t.Cleanup(srv.Close)
	env.url = srv.URL
	return env, fb, ev
}

func rules(t *testing.T, propagation, retireAfter time.Duration) rotation.Rules {
	t.Helper()
	sched, err := config.ParseSchedule("@every 1h")
	if err != nil {
		t.Fatal(err)
	}
	return rotation.Rules{Schedule: sched, ScheduleSpec: "@every 1h", PropagationDelay: propagation, RetireAfter: retireAfter}
}

// Item 1 (fake clock): the lifecycle loop has not ticked since the pending
// key's activates_at; a sign request after it must get the new key.
func TestSignUsesTheNewKeyOnceItActivatesWhileTheLoopIsStalled(t *testing.T) {
	e := newEnv(t, signer.ES256, true)
	rot := decode[struct{ KID, State string }](t, e.post(t, "/v1/rotate", adminTok, `{}`))
	if rot.State != "pending" {
		t.Fatalf("rotate: %+v", rot)
	}
	e.clk.Advance(24*time.Hour + time.Second) // past activates_at, and no tick
	got := decode[struct{ KID string }](t, e.post(t, "/v1/sign", signerTok, signBody("", "")))
	if got.KID != rot.KID {
		t.Fatalf("signed with kid %s after the new key's activates_at; want the new key %s", got.KID, rot.KID)
	}
}

// Item 1 (wall clock): the lifecycle loop really stalls (its backend read
// blocks) across the new key's activates_at while signers keep going. The
// old key must sign nothing after the activation, and must not be destroyed
// before retire-after past the last signature it made.
func TestStalledLoopAcrossActivationWallClock(t *testing.T) {
	const retireAfter = 2 * time.Second
	e, fb, _ := faultEnv(t, clock.Real{}, rules(t, time.Second, retireAfter), 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.mgr.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", e.url+"/v1/sign", strings.NewReader(signBody("", "")))
				req.Header.Set("Authorization", "Bearer "+signerTok)
				req.Header.Set("Content-Type", "application/json")
				if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
					failures.Add(1)
				} else {
					resp.Body.Close()
				}
				time.Sleep(time.Millisecond) // a steady stream of signers, not a busy loop
			}
		}()
	}
	stopSigners := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopSigners()

	rot := decode[struct{ Version int }](t, e.post(t, "/v1/rotate", adminTok, `{}`))
	activates := e.mgr.Snapshot().Keys[1].ActivatesAt
	ch := make(chan struct{})
	fb.stall.Store(&ch) // the loop's next read blocks (a slow disk, a slow Vault KV)
	waitFor(t, 3*time.Second, func() bool { return fb.stalled.Load() > 0 })
	if !time.Now().Before(activates) {
		t.Fatalf("the loop stalled only after activates_at %v", activates)
	}
	release := activates.Add(retireAfter + 500*time.Millisecond) // longer than retire-after past the activation
	time.Sleep(time.Until(release))                              // wall time is the point: the loop stays stalled that long
	fb.stall.Store(nil)
	close(ch)
	waitFor(t, 5*time.Second, func() bool {
		fb.mu.Lock()
		defer fb.mu.Unlock()
		_, gone := fb.destroyed[1]
		return gone
	})
	stopSigners() // every signature in flight is recorded before the checks

	fb.mu.Lock()
	defer fb.mu.Unlock()
	var lastOld time.Time
	newDuringStall := 0
	for _, s := range fb.signed {
		switch {
		case s.version == 1 && s.at.After(lastOld):
			lastOld = s.at
		case s.version == rot.Version && s.at.After(activates) && s.at.Before(release):
			newDuringStall++
		}
	}
	// A signature that started just before the activation may finish just
	// after it; none may start later.
	if lastOld.After(activates.Add(100 * time.Millisecond)) {
		t.Errorf("the old key signed %v after the new key's activates_at", lastOld.Sub(activates))
	}
	if newDuringStall == 0 {
		t.Errorf("the new key signed nothing while the loop was stalled")
	}
	if d := fb.destroyed[1].Sub(lastOld); d < retireAfter {
		t.Errorf("the old key was destroyed %v after its last signature; want at least retire-after (%v)", d, retireAfter)
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d sign requests failed", n)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached within %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type readyBody struct {
	Lifecycle struct {
		Failing *struct {
			Op string `json:"op"`
		} `json:"failing"`
		Emergency *struct {
			Stored    bool   `json:"intent_stored"`
			After     int    `json:"compromised_up_to_version"`
			LastError string `json:"last_error"`
		} `json:"emergency_pending"`
	} `json:"lifecycle"`
}

// Item 3: with the data dir full, an emergency rotation cannot store its
// intent. The answer says exactly that, the compromised key stops signing
// (503 emergency_pending), /readyz and /metrics show it, and once the disk
// has room the loop completes the emergency and a rotation_failed event is
// in the trail.
func TestEmergencyOnAFullDisk(t *testing.T) {
	clk := clock.NewFake(now)
	e, fb, ev := faultEnv(t, clk, rules(t, 24*time.Hour, time.Hour+2*time.Minute), 10*time.Second)
	before := decode[struct{ KID string }](t, e.post(t, "/v1/sign", signerTok, signBody("", "")))

	fb.full.Store(true)
	ev.fail.Store(true) // the audit log is on the same disk
	r := e.post(t, "/v1/rotate", adminTok, `{"emergency":true,"reason":"key leaked"}`)
	checkError(t, r, http.StatusServiceUnavailable, "rotation_failed")
	msg := string(r.body)
	if strings.Contains(msg, "is recorded in the audit trail") || !strings.Contains(msg, "could not be recorded") || !strings.Contains(msg, "refuses to sign") {
		t.Errorf("the answer does not tell the truth: %s", r.body)
	}
	checkError(t, e.post(t, "/v1/sign", signerTok, signBody("", "")), http.StatusServiceUnavailable, "emergency_pending")

	var ready readyBody
	if err := json.Unmarshal(e.get(t, "/readyz", "").body, &ready); err != nil {
		t.Fatal(err)
	}
	if em := ready.Lifecycle.Emergency; em == nil || em.Stored || em.After != 1 || em.LastError == "" || ready.Lifecycle.Failing == nil {
		t.Errorf("/readyz does not show the failed emergency: %+v", ready.Lifecycle)
	}
	metricsText := string(e.get(t, "/metrics", "").body)
	for _, want := range []string{"keyd_emergency_pending 1", "keyd_emergency_intent_unstored 1", `keyd_rotations_total{outcome="failed"}`} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Room again: the loop stores and completes the emergency.
	fb.full.Store(false)
	ev.fail.Store(false)
	clk.Advance(5 * time.Second)
	if err := e.mgr.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := decode[struct{ KID string }](t, e.post(t, "/v1/sign", signerTok, signBody("", "")))
	if after.KID == before.KID {
		t.Fatal("still signing with the compromised key")
	}
	ready = readyBody{}
	if err := json.Unmarshal(e.get(t, "/readyz", "").body, &ready); err != nil || ready.Lifecycle.Emergency != nil {
		t.Errorf("/readyz after completion: %+v %v", ready.Lifecycle, err)
	}
	if ev.count("rotation_failed") < 1 || ev.count("emergency") != 1 {
		t.Errorf("events: %+v", ev.events)
	}
}

// Item 3: the intent is stored but the key cannot be created. The answer
// says it is recorded and will complete; the old key does not sign.
func TestEmergencyStoredButKeyCreationFails(t *testing.T) {
	clk := clock.NewFake(now)
	e, fb, ev := faultEnv(t, clk, rules(t, 24*time.Hour, time.Hour+2*time.Minute), 10*time.Second)
	fb.noCreate.Store(true)
	r := e.post(t, "/v1/rotate", adminTok, `{"emergency":true,"reason":"key leaked"}`)
	checkError(t, r, http.StatusServiceUnavailable, "rotation_failed")
	if !strings.Contains(string(r.body), "is recorded but did not complete") || !strings.Contains(string(r.body), "A rotation_failed event is in the audit trail") {
		t.Errorf("answer: %s", r.body)
	}
	if ev.count("rotation_failed") != 1 {
		t.Errorf("rotation_failed events: %d", ev.count("rotation_failed"))
	}
	checkError(t, e.post(t, "/v1/sign", signerTok, signBody("", "")), http.StatusServiceUnavailable, "emergency_pending")
	fb.noCreate.Store(false)
	clk.Advance(5 * time.Second)
	if err := e.mgr.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := e.post(t, "/v1/sign", signerTok, signBody("", "")); r.status != http.StatusOK {
		t.Fatalf("sign after completion: %d %s", r.status, r.body)
	}
	if in, err := fb.LoadIntent(context.Background()); in != nil || err != nil {
		t.Fatalf("intent left: %+v %v", in, err)
	}
}
