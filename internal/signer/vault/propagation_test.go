package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/signertest"
	"github.com/openedx-keyd/keyd/policies"
)

// TestPropagationStore: two replicas' backends on one Vault, with the
// keyd-server policy's token (create-only confirmations and activations,
// check-and-set observations).
func TestPropagationStore(t *testing.T) {
	e := setup(t, "ES256")
	other := e.newBackend(t, e.srv.Client(t, e.serverToken), nil)
	signertest.TestPropagationStore(t, e.backend, other)
}

// TestMalformedPropagationEntries (issue 20, item 2, Vault KV): a
// malformed entry of the propagation store (an activation without a time,
// a confirmation of another client, garbage observations, a deleted
// confirmation) no longer fails every replica's reads, nor their writes:
// it counts as absent and is reported by Problems; the decision is made
// again in the next slot, where every replica finds it; observations are
// replaced by the next merge.
func TestMalformedPropagationEntries(t *testing.T) {
	ctx := context.Background()
	e := setup(t, "ES256")
	other := e.newBackend(t, e.srv.Client(t, e.serverToken), nil)
	at := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	put := func(p string, data map[string]any) {
		t.Helper()
		if _, err := e.root.Logical().Write(e.kv+"/data/"+p, map[string]any{"data": data}); err != nil {
			t.Fatal(err)
		}
	}
	put("propagation/activations/2", map[string]any{"version": 2})
	put("propagation/confirmations/2/ecommerce", map[string]any{"client": "notes", "version": 2, "by": "admin", "at": at})
	put("propagation/observations/ecommerce", map[string]any{"instances": "not a list"})
	put("propagation/confirmations/2/notes", map[string]any{"client": "notes", "version": 2, "by": "admin", "at": at})
	if _, err := e.root.Logical().Delete(e.kv + "/data/propagation/confirmations/2/notes"); err != nil {
		t.Fatal(err)
	}

	for _, b := range []*Backend{e.backend, other} {
		obs, err := b.Observed(ctx, []int{2}, []string{"ecommerce", "notes"})
		if err != nil {
			t.Fatalf("Observed with malformed entries: %v", err)
		}
		if len(obs.Activations)+len(obs.Confirmations)+len(obs.Observations) != 0 {
			t.Errorf("a malformed entry counts: %+v", obs)
		}
	}
	p := strings.Join(e.backend.Problems(), "\n")
	for _, want := range []string{"propagation/activations/2 ", "propagation/confirmations/2/ecommerce ", "propagation/observations/ecommerce ", "propagation/confirmations/2/notes "} {
		if !strings.Contains(p, want) {
			t.Errorf("Problems do not report %q:\n%s", want, p)
		}
	}

	// Decisions are made again, once, and both replicas follow them.
	a, err := e.backend.Activate(ctx, signer.Activation{Version: 2, At: at, Unconfirmed: []string{"notes"}})
	if err != nil || !a.At.Equal(at) {
		t.Fatalf("Activate over a malformed entry = %+v, %v", a, err)
	}
	if a, err := other.Activate(ctx, signer.Activation{Version: 2, At: at.Add(time.Hour)}); err != nil || !a.At.Equal(at) {
		t.Fatalf("the other replica's Activate = %+v, %v; want the first", a, err)
	}
	for _, client := range []string{"ecommerce", "notes"} {
		if c, err := other.Confirm(ctx, signer.Confirmation{Client: client, Version: 2, By: signer.ByFetch, At: at}); err != nil || c.Client != client {
			t.Fatalf("Confirm %s over a malformed entry = %+v, %v", client, c, err)
		}
	}
	if err := e.backend.SaveObservations(ctx, []signer.Observation{{Client: "ecommerce", Instance: "e1", LastFetch: at, MaxVersion: 2}}, time.Time{}); err != nil {
		t.Fatalf("SaveObservations over a malformed entry: %v", err)
	}
	obs, err := other.Observed(ctx, []int{2}, []string{"ecommerce", "notes"})
	if err != nil || !obs.Activations[2].At.Equal(at) || len(obs.Confirmations) != 2 || len(obs.Observations) != 1 {
		t.Fatalf("after deciding again: %+v, %v", obs, err)
	}
	all, err := other.Decisions(ctx)
	if err != nil || len(all.Activations) != 1 || len(all.Confirmations) != 2 {
		t.Fatalf("Decisions = %+v, %v", all, err)
	}
	// The auditor's policy reads them too (keyd audit verify --vault).
	auditor := e.newBackend(t, e.srv.Client(t, e.srv.Token(t, policies.Auditor)), nil)
	if all, err := auditor.Decisions(ctx); err != nil || len(all.Activations) != 1 || len(all.Confirmations) != 2 {
		t.Fatalf("Decisions with the auditor's token = %+v, %v", all, err)
	}
}
