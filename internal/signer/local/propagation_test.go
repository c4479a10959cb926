package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/signertest"
)

// TestPropagationStore: two processes' stores on one data dir.
func TestPropagationStore(t *testing.T) {
	dir := t.TempDir()
	var stores [2]*PropagationStore
	for i := range stores {
		s, err := NewPropagationStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
	}
	signertest.TestPropagationStore(t, stores[0], stores[1])
}

// TestBadPropagationFilesAreSetAside (issue 20, item 2): one bad file of
// the propagation store (a truncated activation, an activation without a
// time, a corrupt confirmation, observations.json replaced by a
// directory, a file where a directory belongs) no longer fails every read:
// it is moved to the quarantine, reported with the key files, and counts
// as absent (an activation that cannot be read is no activation); the
// decision can be stored again.
func TestBadPropagationFilesAreSetAside(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	write := func(path, content string) func(t *testing.T) {
		return func(t *testing.T) {
			os.MkdirAll(filepath.Dir(path), 0o700)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	mkdir := func(path string) func(t *testing.T) {
		return func(t *testing.T) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		inject func(dir string) func(t *testing.T)
		moved  string // in the quarantine, as named there
	}{
		{"truncated activation", func(d string) func(*testing.T) {
			return write(filepath.Join(d, "propagation", "activations", "2.json"), `{"version":2,"at":"2030-01-0`)
		}, "propagation.activations.2.json."},
		{"activation without a time", func(d string) func(*testing.T) {
			return write(filepath.Join(d, "propagation", "activations", "2.json"), `{"version":2}`)
		}, "propagation.activations.2.json."},
		{"another version's activation", func(d string) func(*testing.T) {
			return write(filepath.Join(d, "propagation", "activations", "2.json"), `{"version":3,"at":"2030-01-02T00:00:00Z"}`)
		}, "propagation.activations.2.json."},
		{"activation a directory", func(d string) func(*testing.T) {
			return mkdir(filepath.Join(d, "propagation", "activations", "2.json"))
		}, "propagation.activations.2.json."},
		{"corrupt confirmation", func(d string) func(*testing.T) {
			return write(filepath.Join(d, "propagation", "confirmations", "2", "ecommerce.json"), "\x00garbage")
		}, "propagation.confirmations.2.ecommerce.json."},
		{"confirmations of a version a file", func(d string) func(*testing.T) {
			return write(filepath.Join(d, "propagation", "confirmations", "2"), "x")
		}, "propagation.confirmations.2."},
		{"observations a directory", func(d string) func(*testing.T) {
			return mkdir(filepath.Join(d, "propagation", "observations.json"))
		}, "propagation.observations.json."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := newBackend(t, dir)
			mustCreate(t, b, 1, signer.EdDSA)
			s, err := NewPropagationStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			tc.inject(dir)(t)
			obs, err := s.Observed(ctx, []int{2}, []string{"ecommerce"})
			if err != nil {
				t.Fatalf("Observed with one bad file: %v", err)
			}
			if len(obs.Activations) != 0 || len(obs.Confirmations) != 0 {
				t.Errorf("a bad file counts: %+v", obs)
			}
			q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "*"))
			if len(q) != 1 || !strings.HasPrefix(filepath.Base(q[0]), tc.moved) {
				t.Fatalf("quarantine holds %v, want %s*", q, tc.moved)
			}
			if p := strings.Join(b.Problems(), "\n"); !strings.Contains(p, tc.moved) || !strings.Contains(p, "quarantine") {
				t.Errorf("Problems do not report it: %q", p)
			}
			if v := b.QuarantinedVersions(); len(v) != 0 {
				t.Errorf("a propagation file counts as a key version: %v", v)
			}
			// The decisions and observations are stored again.
			if err := s.SaveObservations(ctx, []signer.Observation{{Client: "ecommerce", Instance: "e1", LastFetch: at, MaxVersion: 2}}, time.Time{}); err != nil {
				t.Fatalf("SaveObservations: %v", err)
			}
			if c, err := s.Confirm(ctx, signer.Confirmation{Client: "ecommerce", Version: 2, By: signer.ByFetch, At: at}); err != nil || c.At != at {
				t.Fatalf("Confirm = %+v, %v", c, err)
			}
			if a, err := s.Activate(ctx, signer.Activation{Version: 2, At: at}); err != nil || a.At != at {
				t.Fatalf("Activate = %+v, %v", a, err)
			}
			fresh, err := NewPropagationStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			obs, err = fresh.Observed(ctx, []int{2}, []string{"ecommerce"})
			if err != nil || len(obs.Observations) != 1 || len(obs.Confirmations) != 1 || !obs.Activations[2].At.Equal(at) {
				t.Fatalf("after storing again: %+v, %v", obs, err)
			}
		})
	}
}

// TestPropagationDirIsAFile: a file where the store keeps its directory
// does not stop keyd from starting.
func TestPropagationDirIsAFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "propagation"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPropagationStore(dir); err != nil {
		t.Fatalf("NewPropagationStore: %v", err)
	}
	if q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "propagation.*")); len(q) != 1 {
		t.Errorf("quarantine holds %v", q)
	}
}

// TestDecisionsListsEveryStoredDecision: keyd audit verify lists every
// confirmation and activation, read only (a bad file is skipped, not
// moved).
func TestDecisionsListsEveryStoredDecision(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewPropagationStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	for _, c := range []signer.Confirmation{
		{Client: "ecommerce", Version: 2, By: signer.ByFetch, At: at},
		{Client: "odd:name", Version: 2, By: signer.ByAdmin, At: at},
		{Client: "notes", Version: 3, By: signer.ByAdmin, At: at},
	} {
		if _, err := s.Confirm(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Activate(ctx, signer.Activation{Version: 2, At: at, Unconfirmed: []string{"notes"}}); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "propagation", "activations", "4.json")
	if err := os.WriteFile(bad, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := OpenPropagationReadOnly(dir).Decisions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Confirmations) != 3 || len(got.Activations) != 1 || len(got.Activations[2].Unconfirmed) != 1 {
		t.Errorf("Decisions = %+v", got)
	}
	if _, err := os.Stat(bad); err != nil {
		t.Errorf("a read-only listing moved the bad file: %v", err)
	}
	if got, err := OpenPropagationReadOnly(filepath.Join(dir, "nowhere")).Decisions(ctx); err != nil || len(got.Confirmations)+len(got.Activations) != 0 {
		t.Errorf("a data dir without a store: %+v, %v", got, err)
	}
}
