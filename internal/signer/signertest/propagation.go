package signertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// PropagationStore is a store of observed propagation (local data dir,
// Vault KV), as replicas share it.
type PropagationStore interface {
	SaveObservations(ctx context.Context, obs []signer.Observation, forgetBefore time.Time) error
	Observed(ctx context.Context, versions []int, clients []string) (signer.Observed, error)
	Confirm(ctx context.Context, c signer.Confirmation) (signer.Confirmation, error)
	Activate(ctx context.Context, a signer.Activation) (signer.Activation, error)
}

// TestPropagationStore checks a and b, two replicas' handles on one store:
// observations merge (later fetch, higher version) without losing a
// concurrent writer's, silent instances are forgotten, confirmations and
// activations are created once and every replica reads the first.
func TestPropagationStore(t *testing.T, a, b PropagationStore) {
	t.Run("observations merge", func(t *testing.T) { testMerge(t, a, b) })
	t.Run("concurrent writers", func(t *testing.T) { testConcurrent(t, a, b) })
	t.Run("created once", func(t *testing.T) { testCreateOnce(t, a, b) })
}

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func o(client, inst string, at time.Time, v int) signer.Observation {
	return signer.Observation{Client: client, Instance: inst, LastFetch: at, MaxVersion: v}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testMerge(t *testing.T, a, b PropagationStore) {
	ctx := context.Background()
	must(t, a.SaveObservations(ctx, []signer.Observation{o("ecommerce", "e1:1", t0.Add(time.Minute), 1), o("..", "x", t0, 1), o("notes", "old", t0.Add(-48*time.Hour), 1)}, t0.Add(-72*time.Hour)))
	must(t, b.SaveObservations(ctx, []signer.Observation{o("ecommerce", "e1:1", t0, 2), o("ecommerce", "e2:1", t0, 1), o("notes", "n1", t0, 2)}, t0.Add(-24*time.Hour)))
	got, err := b.Observed(ctx, nil, []string{"ecommerce", "notes", ".."})
	must(t, err)
	want := map[string]signer.Observation{
		"ecommerce/e1:1": o("ecommerce", "e1:1", t0.Add(time.Minute), 2),
		"ecommerce/e2:1": o("ecommerce", "e2:1", t0, 1),
		"notes/n1":       o("notes", "n1", t0, 2),
		"../x":           o("..", "x", t0, 1),
	}
	if len(got.Observations) != len(want) {
		t.Errorf("observations %+v, want %d (the silent notes/old forgotten)", got.Observations, len(want))
	}
	for _, g := range got.Observations {
		if w, ok := want[g.Client+"/"+g.Instance]; !ok || !w.LastFetch.Equal(g.LastFetch) || w.MaxVersion != g.MaxVersion {
			t.Errorf("observation %+v, want %+v", g, w)
		}
	}
	if only, err := a.Observed(ctx, nil, []string{"notes"}); err != nil || len(only.Observations) != 1 {
		t.Errorf("observations of notes only: %+v, %v", only.Observations, err)
	}
}

// testConcurrent: concurrent writers lose nothing.
func testConcurrent(t *testing.T, a, b PropagationStore) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for i, s := range []PropagationStore{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 3 {
				if err := s.SaveObservations(ctx, []signer.Observation{o("discovery", fmt.Sprintf("d%d-%d", i, j), t0, 3)}, t0.Add(-time.Hour)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if d, err := a.Observed(ctx, nil, []string{"discovery"}); err != nil || len(d.Observations) != 12 {
		t.Errorf("concurrent writes: %d observations (want 12), %v", len(d.Observations), err)
	}
}

// testCreateOnce: confirmations and activations are created once, the first wins.
func testCreateOnce(t *testing.T, a, b PropagationStore) {
	ctx := context.Background()
	first, err := a.Confirm(ctx, signer.Confirmation{Client: "notes", Version: 2, By: signer.ByAdmin, At: t0, Actor: "role:admin"})
	must(t, err)
	second, err := b.Confirm(ctx, signer.Confirmation{Client: "notes", Version: 2, By: signer.ByFetch, At: t0.Add(time.Hour)})
	must(t, err)
	if first.By != signer.ByAdmin || second.By != signer.ByAdmin || !second.At.Equal(t0) {
		t.Errorf("confirmations: first %+v, second %+v", first, second)
	}
	act, err := b.Activate(ctx, signer.Activation{Version: 2, At: t0, Unconfirmed: []string{"ecommerce"}})
	must(t, err)
	act2, err := a.Activate(ctx, signer.Activation{Version: 2, At: t0.Add(time.Hour)})
	must(t, err)
	if !act2.At.Equal(t0) || len(act2.Unconfirmed) != 1 || !act.At.Equal(t0) {
		t.Errorf("activations: %+v then %+v", act, act2)
	}
	obs, err := a.Observed(ctx, []int{2, 3}, []string{"notes", "ecommerce"})
	must(t, err)
	if len(obs.Confirmations) != 1 || obs.Confirmations[0].Client != "notes" || len(obs.Activations) != 1 || !obs.Activations[2].At.Equal(t0) {
		t.Errorf("observed: confirmations %+v activations %+v", obs.Confirmations, obs.Activations)
	}
}
