package rotation_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/conformance"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// trail is an audit trail that deduplicates as the real one does (on
// audit.KeyOf), and that can
// "crash": while down, every event is refused, as if the process died
// right after storing a decision and before its event was written (the
// retry queue of a dead process is gone with it).
type trail struct {
	mu     sync.Mutex
	down   bool
	seen   map[audit.Key]int
	events []rotation.Event
}

var errCrashed = errors.New("injected crash: the event was never written")

func (tr *trail) Emit(_ context.Context, e rotation.Event) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.down {
		return errCrashed
	}
	id := audit.KeyOf(e.Type, e.Version, e.Reason)
	if tr.seen == nil {
		tr.seen = map[audit.Key]int{}
	}
	if tr.seen[id]++; tr.seen[id] == 1 {
		tr.events = append(tr.events, e)
	}
	return nil
}

func (tr *trail) setDown(down bool) { tr.mu.Lock(); tr.down = down; tr.mu.Unlock() }

func (tr *trail) count(typ audit.Type, v int, reason string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, e := range tr.events {
		if e.Type == typ && e.Version == v && (reason == "" || e.Reason == reason) {
			n++
		}
	}
	return n
}

type decisionStore interface {
	rotation.PropagationStore
	SaveObservations(ctx context.Context, obs []signer.Observation, forgetBefore time.Time) error
}

// TestDecisionEventsSurviveACrash (issue 20, item 4): a confirmation and an
// activation written without confirmation are stored before their audit
// events. A crash in between (the trail refuses the event, then the
// process is gone with its retry queue) must not lose the event: the next
// start reads the stored decisions and records the missing events, once.
func TestDecisionEventsSurviveACrash(t *testing.T) {
	for name, env := range map[string]func(*testing.T) (rotation.Backend, decisionStore){
		"local": func(t *testing.T) (rotation.Backend, decisionStore) {
			dir := t.TempDir()
			b, err := local.New(dir)
			if err != nil {
				t.Fatal(err)
			}
			s, err := local.NewPropagationStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			return b, s
		},
		"vault": func(t *testing.T) (rotation.Backend, decisionStore) {
			e := conformance.Vault(t, signer.ES256)
			b := e.Backend.(interface {
				rotation.Backend
				decisionStore
			})
			return b, b
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, st := env(t)
			testDecisionEventsSurviveACrash(t, b, st)
		})
	}
}

func testDecisionEventsSurviveACrash(t *testing.T, b rotation.Backend, st decisionStore) {
	ctx := context.Background()
	clk := clock.NewFake(time.Now()) // Vault stamps versions with its own clock
	tr := &trail{}
	rules := hourlyRules(t)
	rules.ExpectedClients = []string{"ecommerce", "notes"}
	rules.InstanceWindow = time.Hour
	rules.ActivationMaxWait = 2 * time.Hour
	start := func() *rotation.Manager { // a (re)start: nothing in memory
		m, err := rotation.New(rotation.Config{Backend: b, Propagation: st, Rules: rules, Algorithm: signer.ES256,
			Clock: clk, Events: tr, Refresh: time.Minute, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := start()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := m.Rotate(ctx, rotation.RotateRequest{Actor: "role:admin", Reason: "drill"})
	if err != nil || p.State != rotation.Pending || !p.Gated() {
		t.Fatalf("rotate: %+v, %v; want a gated pending key", p, err)
	}
	v := p.Version

	// ecommerce holds the key; the confirmation is stored at activates_at,
	// and the process crashes before its event is written.
	clk.Advance(11 * time.Minute)
	obs := signer.Observation{Client: "ecommerce", Instance: "e1", LastFetch: clk.Now().UTC(), MaxVersion: v}
	if err := st.SaveObservations(ctx, []signer.Observation{obs}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	tr.setDown(true)
	_ = m.Tick(ctx)
	conf := rotation.ConfirmedReason(signer.Confirmation{Client: "ecommerce", By: signer.ByFetch})
	if got, _ := st.Observed(ctx, []int{v}, []string{"ecommerce"}); len(got.Confirmations) != 1 {
		t.Fatalf("the confirmation was not stored: %+v", got)
	}
	tr.setDown(false)
	m = start()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := tr.count(audit.PropagationConfirmed, v, conf); n != 1 {
		t.Fatalf("after the restart: %d propagation_confirmed events for ecommerce, want 1 (%+v)", n, tr.events)
	}

	// notes never confirms: at the max wait the activation is written
	// without it, and the process crashes before its event.
	clk.Advance(2 * time.Hour)
	if err := st.SaveObservations(ctx, []signer.Observation{{Client: "ecommerce", Instance: "e1", LastFetch: clk.Now().UTC(), MaxVersion: v}}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	tr.setDown(true)
	_ = m.Tick(ctx)
	if got, _ := st.Observed(ctx, []int{v}, nil); len(got.Activations[v].Unconfirmed) != 1 {
		t.Fatalf("the activation was not stored unconfirmed: %+v", got)
	}
	tr.setDown(false)
	m = start()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := tr.count(audit.ActivationUnconfirmed, v, ""); n != 1 {
		t.Fatalf("after the restart: %d activation_unconfirmed events, want 1 (%+v)", n, tr.events)
	}
	if s := m.Snapshot(); s.Signing.Version != v {
		t.Fatalf("v%d signs, want v%d", s.Signing.Version, v)
	}
	// Another restart records nothing twice.
	m = start()
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if tr.count(audit.PropagationConfirmed, v, conf) != 1 || tr.count(audit.ActivationUnconfirmed, v, "") != 1 {
		t.Fatalf("events after another restart: %+v", tr.events)
	}
}
