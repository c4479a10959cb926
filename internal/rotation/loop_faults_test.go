package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/metrics"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/local"
	"github.com/openedx-keyd/keyd/internal/signer/signertest"
)

// Tests for issue 12 items 1-3: the lifecycle under faults.

// logCount counts log records by message.
type logCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCount) WithGroup(string) slog.Handler            { return l }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[string]int{}
	}
	l.n[r.Message]++
	return nil
}

func (l *logCount) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[msg]
}

// gathered is the sum of the values of the metric called name.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

var errNoSpace = fmt.Errorf("write: %w", syscall.ENOSPC) // an injected ENOSPC: portable, and root cannot bypass it

// Item 2: a backend that cannot be read once the next transition is in the
// past made Run spin (no timer between ticks). Now every failed tick backs
// off up to the refresh interval, logs once, and shows in Health and the
// metrics; recovery is logged once too.
func TestRunBacksOffWhileTheBackendCannotBeRead(t *testing.T) {
	clk := clock.NewFake(t0)
	ub := &signertest.Faulty{Backend: newLocal(t)} // its keys become unreadable (a corrupt key file, a revoked Vault token)
	logs := &logCount{}
	reg := prometheus.NewRegistry()
	mx := metrics.New(reg)
	m, err := New(Config{Backend: ub, Rules: hourly(t), Algorithm: signer.ES256, Clock: clk, Events: &recorder{},
		Refresh: time.Minute, Logger: slog.New(logs), Metrics: mx})
	if err != nil {
		t.Fatal(err)
	}
	metrics.WatchLifecycle(reg, m, clk)
	ctx, cancel := context.WithCancel(context.Background())
	bootstrapAndRotate(t, m) // v2 activates in 10 minutes
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	asleep(t, clk)

	ub.Break(signertest.Keys, errInjected)
	clk.Advance(11 * time.Minute) // the snapshot's next transition is now in the past
	// Before the fix the loop never slept again: this condition never held.
	asleep(t, clk)
	before := ub.Calls(signertest.Keys)
	for range 10 * 60 { // ten minutes in one-second steps
		clk.Advance(time.Second)
		asleep(t, clk)
	}
	reads := ub.Calls(signertest.Keys) - before
	// 1+2+4+8+16+32 s, then once a minute: about 14 reads in ten minutes.
	if reads < 5 || reads > 20 {
		t.Fatalf("%d reads of a broken backend in ten minutes; want a bounded backoff (5 to 20)", reads)
	}
	h := m.Health()
	if h.BackendUp || h.Failing == nil || h.Failing.Op != "keys" || h.Failing.Failures < 5 || h.LastError == "" {
		t.Fatalf("health while failing: %+v (failing %+v)", h, h.Failing)
	}
	if got := gathered(t, reg, "keyd_lifecycle_failures_total"); got < 5 {
		t.Errorf("keyd_lifecycle_failures_total = %v, want at least 5", got)
	}
	if got := gathered(t, reg, "keyd_lifecycle_backoff_seconds"); got != 60 {
		t.Errorf("keyd_lifecycle_backoff_seconds = %v, want 60", got)
	}
	if m.Backoff() != time.Minute {
		t.Errorf("backoff = %v, want the refresh interval (1m) as its bound", m.Backoff())
	}
	if n := logs.count("lifecycle step failing; backing off"); n != 1 {
		t.Errorf("%d warnings for one failing state, want 1", n)
	}

	ub.Break(signertest.Keys, nil)
	clk.Advance(time.Minute)
	asleep(t, clk) // after the tick that read the backend again
	if f := m.Health().Failing; f != nil {
		t.Fatalf("still failing after the backend recovered: %+v", f)
	}
	if n := logs.count("lifecycle recovered"); n != 1 {
		t.Errorf("%d recovery logs, want 1", n)
	}
	if s := m.Snapshot(); !s.HasActive || s.Signing.Version != 2 || !m.Health().BackendUp || m.Backoff() != 0 {
		t.Fatalf("after recovery: active %d, health %+v", s.Signing.Version, m.Health())
	}
}

// Item 2, actions: a failing creation backed off only until the next tick
// that was not allowed to act, which cleared the failure; so it was retried
// every second or two and audited each time. Now the backoff grows, the
// failure stays until an attempt succeeds, and it is audited once.
func TestFailingActionBacksOffAndIsReportedOnce(t *testing.T) {
	clk := clock.NewFake(t0)
	fb := &signertest.Faulty{Backend: newLocal(t)}
	ev := &recorder{}
	m := newManager(t, fb, clk, ev)
	ctx := context.Background()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour) // a rotation is due
	fb.Fail(signertest.Create, 1000)
	for range 200 {
		_ = m.Tick(ctx)
		clk.Advance(time.Second)
	}
	attempts := 1000 - fb.Left(signertest.Create)
	// 1, 2, 4, ... 128 s: eight attempts in 200 s.
	if attempts < 6 || attempts > 10 {
		t.Fatalf("%d creation attempts in 200s, want a growing backoff (6 to 10)", attempts)
	}
	if n := ev.count("rotation_failed"); n != 1 {
		t.Fatalf("%d rotation_failed events for one failing state, want 1", n)
	}
	if f := m.Health().Failing; f == nil || f.Op != "rotate" || f.Failures != attempts {
		t.Fatalf("health: %+v", f)
	}
	fb.Fail(signertest.Create, 0)
	clk.Advance(5 * time.Minute)
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if h := m.Health(); h.Failing != nil || h.LastError != "" {
		t.Fatalf("failure not cleared after success: %+v", h)
	}
}

// Item 1: the sign path asks the rules at request time. A snapshot made
// before a pending key's activation (the loop is stalled) still names the
// pending key once its activates_at has passed.
func TestSigningKeyFollowsTheRulesWhileTheLoopIsStalled(t *testing.T) {
	clk := clock.NewFake(t0)
	m := newManager(t, newLocal(t), clk, &recorder{})
	p := bootstrapAndRotate(t, m)
	if _, k, err := m.SigningKey(clk.Now()); err != nil || k.Version != 1 {
		t.Fatalf("before activation: version %d, %v; want 1", k.Version, err)
	}
	clk.Set(p.ActivatesAt) // no tick: the snapshot still says version 1 is active
	if _, k, err := m.SigningKey(clk.Now()); err != nil || k.Version != 2 || k.KID != p.KID {
		t.Fatalf("at activates_at: version %d, %v; want 2", k.Version, err)
	}
}

// Item 1: a key is never destroyed before retire-after past the last
// signature it made (one in flight across its successor's activation).
func TestKeyIsKeptRetireAfterItsLastSignature(t *testing.T) {
	clk := clock.NewFake(t0)
	b := newLocal(t)
	m := newManager(t, b, clk, &recorder{})
	ctx := context.Background()
	p := bootstrapAndRotate(t, m)
	last := p.ActivatesAt.Add(30 * time.Second)
	m.Signed(1, last)
	retireAfter := hourly(t).RetireAfter
	clk.Set(p.ActivatesAt.Add(retireAfter + time.Second)) // the planned retires_at has passed
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if keys, _ := b.Keys(ctx); len(keys) != 2 {
		t.Fatalf("version 1 destroyed %v after its last signature (retire-after %v)", clk.Now().Sub(last), retireAfter)
	}
	if s := m.Snapshot(); !s.Keys[0].RetiresAt.Equal(last.Add(retireAfter)) {
		t.Fatalf("retires_at = %v, want last signature + retire-after = %v", s.Keys[0].RetiresAt, last.Add(retireAfter))
	}
	clk.Set(last.Add(retireAfter))
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if keys, _ := b.Keys(ctx); len(keys) != 1 || keys[0].Version != 2 {
		t.Fatalf("version 1 not destroyed at last signature + retire-after: %d keys", len(keys))
	}
}

// Item 3: the data dir is full, so the emergency intent cannot be stored
// (nor the key made, nor the audit event written). The compromised key
// stops signing at once, the state shows, the intent is held in memory and
// the loop stores and completes it once the disk has room.
func TestEmergencyWhoseIntentCannotBeStored(t *testing.T) {
	clk := clock.NewFake(t0)
	db := &signertest.Faulty{Backend: newLocal(t)} // its data dir fills up
	ev := &recorder{}
	m := newManager(t, db, clk, ev)
	ctx := context.Background()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	db.Break(signertest.SaveIntent, errNoSpace)
	db.Break(signertest.Create, errNoSpace)
	ev.setFail(true)
	_, err := m.Rotate(ctx, RotateRequest{Emergency: true, Reason: "key leaked", Actor: "role:admin"})
	var ee *EmergencyError
	if !errors.As(err, &ee) || ee.Stored || ee.Audited || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Rotate = %v (%+v); want an EmergencyError, not stored, not audited", err, ee)
	}
	if _, _, err := m.SigningKey(clk.Now()); !errors.Is(err, ErrEmergencyPending) {
		t.Fatalf("the compromised key still signs: %v", err)
	}
	h := m.Health()
	if e := h.EmergencyPending; e == nil || e.Stored || e.After != 1 || e.LastError == "" || h.Failing == nil {
		t.Fatalf("health: %+v (emergency %+v)", h, h.EmergencyPending)
	}
	if pending, stored := m.EmergencyPending(); !pending || stored {
		t.Fatalf("EmergencyPending = %v, %v", pending, stored)
	}
	// The loop retries storing it (after the backoff), still failing.
	saves := db.Calls(signertest.SaveIntent)
	clk.Advance(2 * time.Second)
	_ = m.Tick(ctx)
	if db.Calls(signertest.SaveIntent) == saves {
		t.Fatal("the loop did not retry storing the intent")
	}
	if _, _, err := m.SigningKey(clk.Now()); !errors.Is(err, ErrEmergencyPending) {
		t.Fatalf("the compromised key signs again: %v", err)
	}
	// Room again: the next tick stores and completes it.
	db.Break(signertest.SaveIntent, nil)
	db.Break(signertest.Create, nil)
	ev.setFail(false)
	clk.Advance(5 * time.Second)
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	_, k, err := m.SigningKey(clk.Now())
	if err != nil || k.Version != 2 {
		t.Fatalf("after completion: version %d, %v", k.Version, err)
	}
	if s := m.Snapshot(); len(s.Keys) != 1 || !s.Keys[0].Emergency {
		t.Fatalf("after completion: %+v", s.Keys)
	}
	if h := m.Health(); h.EmergencyPending != nil || h.Failing != nil {
		t.Fatalf("health after completion: %+v", h)
	}
	if in, _ := db.LoadIntent(ctx); in != nil {
		t.Fatal("intent left behind")
	}
	if ev.count("rotation_failed") < 1 || ev.count("emergency") != 1 || ev.count("destroyed") != 1 {
		t.Fatalf("events: %+v", ev.events)
	}
}

// Item 3: the intent is stored but no key can be created (on any replica):
// every replica that reads the intent stops signing with the compromised
// key until one of them completes the emergency.
func TestStoredEmergencyStopsSigningOnEveryReplica(t *testing.T) {
	clk := clock.NewFake(t0)
	dir := t.TempDir()
	var bs []*signertest.Faulty
	var ms []*Manager
	for range 2 {
		lb, err := local.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		b := &signertest.Faulty{Backend: lb}
		bs = append(bs, b)
		ms = append(ms, newManager(t, b, clk, &recorder{}))
	}
	ctx := context.Background()
	for _, m := range ms {
		if err := m.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	bs[0].Break(signertest.Create, errNoSpace) // key creation down
	bs[1].Break(signertest.Create, errNoSpace)
	_, err := ms[0].Rotate(ctx, RotateRequest{Emergency: true, Reason: "key leaked", Actor: "role:admin"})
	var ee *EmergencyError
	if !errors.As(err, &ee) || !ee.Stored {
		t.Fatalf("Rotate = %v; want an EmergencyError with the intent stored", err)
	}
	if _, _, err := ms[0].SigningKey(clk.Now()); !errors.Is(err, ErrEmergencyPending) {
		t.Fatalf("replica 0 still signs with the compromised key: %v", err)
	}
	if _, k, err := ms[1].SigningKey(clk.Now()); err != nil || k.Version != 1 {
		t.Fatalf("replica 1 before its tick: %d %v", k.Version, err)
	}
	_ = ms[1].Tick(ctx) // reads the intent; its creation fails too
	if _, _, err := ms[1].SigningKey(clk.Now()); !errors.Is(err, ErrEmergencyPending) {
		t.Fatalf("replica 1 still signs with the compromised key after reading the intent: %v", err)
	}
	if e := ms[1].Health().EmergencyPending; e == nil || !e.Stored {
		t.Fatalf("replica 1 health: %+v", ms[1].Health())
	}
	bs[1].Break(signertest.Create, nil)
	clk.Advance(5 * time.Second)
	if err := ms[1].Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ms[0].Tick(ctx); err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if _, k, err := m.SigningKey(clk.Now()); err != nil || k.Version != 2 {
			t.Fatalf("replica %d after completion: version %d, %v", i, k.Version, err)
		}
		if h := m.Health(); h.EmergencyPending != nil {
			t.Fatalf("replica %d still reports the emergency: %+v", i, h.EmergencyPending)
		}
	}
}
