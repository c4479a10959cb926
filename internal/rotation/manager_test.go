package rotation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/local"
	"github.com/openedx-keyd/keyd/internal/signer/signertest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder collects events like the audit trail would (deduplicated).
type recorder struct {
	mu     sync.Mutex
	fail   bool // the trail is unavailable
	seen   map[string]bool
	events []Event
}

func (r *recorder) Emit(_ context.Context, e Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errInjected
	}
	id := fmt.Sprintf("%s/%d", e.Type, e.Version)
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if !r.seen[id] || e.Type == "rotation_failed" {
		r.seen[id] = true
		r.events = append(r.events, e)
	}
	return nil
}

// setFail makes the trail refuse (true) or take (false) events.
func (r *recorder) setFail(fail bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = fail
}

func (r *recorder) count(typ audit.Type) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// errInjected is the failure of the shared fake backend (signertest.Faulty),
// also used by this package's own fakes.
var errInjected = signertest.ErrInjected

func hourly(t *testing.T) Rules {
	t.Helper()
	s, err := cron.ParseStandard("@every 1h")
	if err != nil {
		t.Fatal(err)
	}
	return Rules{Schedule: s, ScheduleSpec: "@every 1h", PropagationDelay: 10 * time.Minute, RetireAfter: 7 * time.Minute}
}

func newManager(t *testing.T, b Backend, clk clock.Clock, ev Events) *Manager {
	t.Helper()
	m, err := New(Config{Backend: b, Rules: hourly(t), Algorithm: signer.ES256, Clock: clk, Events: ev, Refresh: time.Minute, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// bootstrapAndRotate ticks m (version 1, the bootstrap key) and rotates it
// by hand: version 2, which it returns, is pending.
func bootstrapAndRotate(t *testing.T, m *Manager) Published {
	t.Helper()
	ctx := context.Background()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := m.Rotate(ctx, RotateRequest{Actor: "role:admin"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newLocal(t *testing.T) *local.Backend {
	t.Helper()
	b, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// watcher checks the lifecycle invariants over a sequence of snapshots.
type watcher struct {
	t           *testing.T
	firstSeen   map[int]time.Time // first published
	activeSince map[int]time.Time
	retiresAt   map[int]time.Time
	gone        map[int]bool
}

func newWatcher(t *testing.T) *watcher {
	return &watcher{t: t, firstSeen: map[int]time.Time{}, activeSince: map[int]time.Time{}, retiresAt: map[int]time.Time{}, gone: map[int]bool{}}
}

func (w *watcher) observe(s *Snapshot, p time.Duration) {
	w.t.Helper()
	actives := 0
	present := map[int]bool{}
	for _, k := range s.Keys {
		present[k.Version] = true
		if w.gone[k.Version] {
			w.t.Fatalf("%v: version %d published again after it left the JWKS", s.At, k.Version)
		}
		if _, ok := w.firstSeen[k.Version]; !ok {
			w.firstSeen[k.Version] = s.At
		}
		switch k.State {
		case Active:
			actives++
			if _, ok := w.activeSince[k.Version]; !ok {
				w.activeSince[k.Version] = s.At
				if k.Version > 1 && !k.Emergency && s.At.Sub(w.firstSeen[k.Version]) < p {
					w.t.Fatalf("%v: version %d signs after being published only %v", s.At, k.Version, s.At.Sub(w.firstSeen[k.Version]))
				}
			}
		case Retiring:
			w.retiresAt[k.Version] = k.RetiresAt
		}
	}
	if actives != 1 {
		w.t.Fatalf("%v: %d active keys", s.At, actives)
	}
	for v := range w.firstSeen {
		if !present[v] && !w.gone[v] {
			w.gone[v] = true
			if ra, ok := w.retiresAt[v]; !ok || s.At.Before(ra) {
				w.t.Fatalf("%v: version %d left the JWKS before its retires_at %v", s.At, v, ra)
			}
		}
	}
}

func TestManyRotationsWithFakeClock(t *testing.T) {
	clk := clock.NewFake(t0)
	ev := &recorder{}
	m := newManager(t, newLocal(t), clk, ev)
	w := newWatcher(t)
	ctx := context.Background()
	for step := 0; step < 10*60; step++ { // ten hours, one tick a minute
		if err := m.Tick(ctx); err != nil {
			t.Fatalf("tick at %v: %v", clk.Now(), err)
		}
		w.observe(m.Snapshot(), 10*time.Minute)
		clk.Advance(time.Minute)
	}
	if n := len(w.firstSeen); n != 10 && n != 11 {
		t.Errorf("%d versions created in ten hours of hourly rotations, want 10 or 11", n)
	}
	if ev.count("bootstrap") != 1 || ev.count("created") < 9 || ev.count("destroyed") < 8 || ev.count("activated") < 9 || ev.count("retired") < 8 {
		t.Errorf("events: bootstrap %d created %d activated %d retired %d destroyed %d",
			ev.count("bootstrap"), ev.count("created"), ev.count("activated"), ev.count("retired"), ev.count("destroyed"))
	}
}

func TestRunLoopFollowsTheClock(t *testing.T) {
	clk := clock.NewFake(t0)
	b := newLocal(t)
	m := newManager(t, b, clk, &recorder{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	w := newWatcher(t)
	for i := 0; i < 300; i++ { // five hours in one-minute steps
		asleep(t, clk)
		w.observe(m.Snapshot(), 10*time.Minute)
		clk.Advance(time.Minute)
	}
	keys, err := b.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newest := keys[len(keys)-1].Version; newest < 5 || newest > 6 {
		t.Errorf("newest version after five hours = %d, want 5 or 6", newest)
	}
}

// asleep waits until the loop under test has gone back to sleep on clk (a
// timer is pending), so that the clock may move.
func asleep(t *testing.T, clk *clock.Fake) {
	t.Helper()
	if !clk.WaitForWaiter(5 * time.Second) {
		t.Fatal("the loop did not go back to sleep within 5s")
	}
}

// replicas returns n managers on one local data dir, as n keyd processes
// on one host, sharing the clock clk.
func replicas(t *testing.T, n int, clk clock.Clock) (string, []*Manager) {
	t.Helper()
	dir := t.TempDir()
	var ms []*Manager
	for range n {
		b, err := local.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, newManager(t, b, clk, &recorder{}))
	}
	return dir, ms
}

func TestReplicasCreateOneVersionPerRotation(t *testing.T) {
	clk := clock.NewFake(t0)
	dir, ms := replicas(t, 3, clk)
	ctx := context.Background()
	for step := 0; step < 5*60; step++ {
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Add(1)
			go func() { defer wg.Done(); _ = m.Tick(ctx) }()
		}
		wg.Wait()
		clk.Advance(time.Minute)
	}
	b, _ := local.New(dir)
	keys, _ := b.Keys(ctx)
	if newest := keys[len(keys)-1].Version; newest < 5 || newest > 6 {
		t.Fatalf("three replicas made %d versions in five hours, want 5 or 6 (one per rotation)", newest)
	}
}

func TestFailedStepsCompleteOnTheNextTick(t *testing.T) {
	clk := clock.NewFake(t0)
	fb := &signertest.Faulty{Backend: newLocal(t)}
	ev := &recorder{}
	m := newManager(t, fb, clk, ev)
	ctx := context.Background()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	fb.Fail(signertest.Create, 1)
	if err := m.Tick(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("tick with failing create: err = %v", err)
	}
	if ev.count("rotation_failed") != 1 || !m.Health().BackendUp || m.Health().LastError == "" {
		t.Fatalf("failure not reported: events %v health %+v", ev.events, m.Health())
	}
	// Backoff: an immediate retry does nothing; after it, the rotation completes.
	_ = m.Tick(ctx)
	clk.Advance(2 * time.Second)
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if s := m.Snapshot(); len(s.Keys) != 2 || s.Keys[1].State != Pending {
		t.Fatalf("after recovery: %+v", s.Keys)
	}
	// A failing destroy leaves the retiring key published until it succeeds.
	clk.Advance(10*time.Minute + 7*time.Minute)
	fb.Fail(signertest.Destroy, 1)
	_ = m.Tick(ctx)
	if s := m.Snapshot(); s == nil || len(s.Keys) != 2 {
		t.Fatalf("key vanished although destroy failed")
	}
	clk.Advance(5 * time.Second)
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if s := m.Snapshot(); len(s.Keys) != 1 || s.Keys[0].Version != 2 {
		t.Fatalf("destroy not completed: %+v", s.Keys)
	}
}

func TestEmergencyRotation(t *testing.T) {
	clk := clock.NewFake(t0)
	lb := newLocal(t)
	fb := &signertest.Faulty{Backend: lb}
	ev := &recorder{}
	m := newManager(t, fb, clk, ev)
	ctx := context.Background()
	bootstrapAndRotate(t, m) // v2 pending
	// Crash half-way: the emergency key exists, older keys not yet destroyed.
	fb.Fail(signertest.Destroy, 1)
	if _, err := m.Rotate(ctx, RotateRequest{Emergency: true, Reason: "key leaked", Actor: "role:admin"}); err == nil {
		t.Fatal("emergency with failing destroy reported success")
	}
	in, err := fb.LoadIntent(ctx)
	if err != nil || in == nil {
		t.Fatalf("intent not kept after a failed emergency: %v %v", in, err)
	}
	clk.Advance(time.Second)
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Snapshot()
	if len(s.Keys) != 1 || s.Keys[0].Version != 3 || s.Keys[0].State != Active || !s.Keys[0].Emergency {
		t.Fatalf("after completing the emergency: %+v", s.Keys)
	}
	if in, _ := fb.LoadIntent(ctx); in != nil {
		t.Fatal("intent not cleared")
	}
	if ev.count("emergency") != 1 || ev.count("destroyed") != 2 {
		t.Fatalf("events: %+v", ev.events)
	}
	// Signing with the destroyed or older versions is refused by the backend.
	if _, err := lb.Sign(ctx, signer.Credential{}, 1, signer.ES256, []byte("x")); err == nil {
		t.Fatal("version 1 still signs after the emergency")
	}
}

func TestRotateWhilePendingReturnsThePendingKey(t *testing.T) {
	clk := clock.NewFake(t0)
	m := newManager(t, newLocal(t), clk, &recorder{})
	ctx := context.Background()
	a := bootstrapAndRotate(t, m)
	b, err := m.Rotate(ctx, RotateRequest{Actor: "role:admin"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != 2 || b.Version != 2 || b.State != Pending {
		t.Fatalf("rotate twice: %d/%s then %d/%s", a.Version, a.State, b.Version, b.State)
	}
}

func TestMismatchCreatesAndDestroysNothing(t *testing.T) {
	clk := clock.NewFake(t0)
	b := newLocal(t)
	m := newManager(t, b, clk, &recorder{})
	ctx := context.Background()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	r := hourly(t)
	r.PropagationDelay = 5 * time.Minute
	other, _ := New(Config{Backend: b, Rules: r, Algorithm: signer.ES256, Clock: clk, Events: &recorder{}, Logger: quiet})
	clk.Advance(2 * time.Hour)
	if err := other.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if keys, _ := b.Keys(ctx); len(keys) != 1 {
		t.Fatalf("a replica with other settings created a key")
	}
	if h := other.Health(); h.ConfigMismatch == "" || !other.ConfigMismatch() {
		t.Fatalf("mismatch not reported: %+v", h)
	}
	// A normal rotation there is refused, unless the operator adopts the
	// settings; an emergency is never refused.
	if _, err := other.Rotate(ctx, RotateRequest{Actor: "role:admin"}); !errors.Is(err, ErrConfigMismatch) {
		t.Fatalf("rotate on a mismatched replica: err = %v", err)
	}
	p, err := other.Rotate(ctx, RotateRequest{Actor: "role:admin", AdoptSettings: true})
	if err != nil || p.Version != 2 || p.PropagationDelay != 5*time.Minute {
		t.Fatalf("adopting rotation: %+v, %v", p.Record, err)
	}
	if _, err := m.Rotate(ctx, RotateRequest{Emergency: true, Reason: "leak", Actor: "role:admin"}); err != nil {
		t.Fatalf("emergency on a replica whose settings now differ: %v", err)
	}
}

func TestRotateAfterLosingTheRaceReturnsTheNewKey(t *testing.T) {
	_, ms := replicas(t, 2, clock.NewFake(t0))
	ctx := context.Background()
	if err := ms[0].Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ms[1].Tick(ctx); err != nil {
		t.Fatal(err)
	}
	// Replica 1 decides on version 2 from its own read, but replica 0 creates it first.
	lost := &signertest.Faulty{Backend: ms[1].cfg.Backend.(signer.Backend)}
	var once sync.Once
	lost.Around(signertest.Create, func(_ context.Context, create func() error) error {
		once.Do(func() { ms[0].Rotate(ctx, RotateRequest{Actor: "role:admin"}) })
		return create()
	})
	ms[1].cfg.Backend = lost
	p, err := ms[1].Rotate(ctx, RotateRequest{Actor: "role:admin"})
	if err != nil || p.Version != 2 || p.State != Pending {
		t.Fatalf("rotate after a lost race = version %d %s, %v; want the pending version 2", p.Version, p.State, err)
	}
}

func TestDestroyedEventIsRetriedUntilRecorded(t *testing.T) {
	clk := clock.NewFake(t0)
	ev := &recorder{}
	m := newManager(t, newLocal(t), clk, ev)
	ctx := context.Background()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour) // rotation
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(11 * time.Minute) // activation
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(8 * time.Minute) // past retires_at: version 1 is destroyed while the trail is down
	ev.setFail(true)
	_ = m.Tick(ctx)
	ev.setFail(false)
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if ev.count("destroyed") != 1 {
		t.Fatalf("destroyed event lost: %+v", ev.events)
	}
}

func TestRetirementReportedAfterDowntime(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	b, _ := local.New(dir)
	m := newManager(t, b, clk, &recorder{})
	ctx := context.Background()
	bootstrapAndRotate(t, m)
	// keyd is down while version 2 activates and version 1 retires; a fresh
	// process starts long after version 1's retires_at.
	clk.Advance(3 * time.Hour)
	ev := &recorder{}
	fresh := newManager(t, b, clk, ev)
	if err := fresh.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, e := range ev.events {
		order = append(order, fmt.Sprintf("%s/%d", e.Type, e.Version))
	}
	want := "bootstrap/1 activated/1 retired/1 created/2 activated/2 destroyed/1"
	if got := strings.Join(order, " "); !strings.Contains(got, "retired/1") || strings.Index(got, "destroyed/1") < strings.Index(got, "activated/2") {
		t.Fatalf("events after downtime: %s\nwant in this order: %s", got, want)
	}
}

func TestRotationNotReportedDoneWithoutItsAuditEvent(t *testing.T) {
	clk := clock.NewFake(t0)
	ev := &recorder{}
	m := newManager(t, newLocal(t), clk, ev)
	ctx := context.Background()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	ev.setFail(true)
	if _, err := m.Rotate(ctx, RotateRequest{Actor: "role:admin"}); err == nil {
		t.Fatal("rotation reported done although its audit event was not recorded")
	}
	ev.setFail(false)
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if ev.count("created") != 1 {
		t.Fatalf("the created event was not recorded on the next tick: %+v", ev.events)
	}
}
