package audit

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/vaulttest"
)

func TestMain(m *testing.M) { vaulttest.Main(m) }

// mountKV mounts a fresh KV v2 engine on the shared dev server and waits
// until it answers.
func mountKV(t *testing.T, srv *vaulttest.Server) string {
	t.Helper()
	ctx := context.Background()
	root := srv.Client(t, srv.RootToken)
	name := vaulttest.UniqueName("audit-kv")
	err := root.Sys().MountWithContext(ctx, name, &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}})
	if err != nil {
		t.Fatalf("mount %s: %v", name, err)
	}
	// A new KV v2 mount refuses requests for a moment while it sets up.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := root.Logical().ReadWithContext(ctx, name+"/config")
		if err == nil {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("kv mount %s never became ready: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writerPolicy is what keyd-server needs on the audit chain: create and read
// entries, list them; no update, no delete.
func writerPolicy(mount string) string {
	return fmt.Sprintf(`
path "%[1]s/data/audit/*" {
  capabilities = ["create", "read"]
}
path "%[1]s/metadata/audit" {
  capabilities = ["list"]
}
path "%[1]s/metadata/audit/" {
  capabilities = ["list"]
}
`, mount)
}

func testEvent(t *testing.T, seq int64, prev string) Event {
	t.Helper()
	ev := Event{Seq: seq, Time: "2025-03-01T11:30:45Z", Type: Created, KID: "k", Version: int(seq), Actor: "admin", Reason: "test", PrevHash: prev}
	h, err := Hash(ev)
	if err != nil {
		t.Fatal(err)
	}
	ev.Hash = h
	return ev
}

func TestVaultStoreCreateOnly(t *testing.T) {
	srv := vaulttest.StartShared(t)
	mount := mountKV(t, srv)
	ctx := context.Background()
	root := srv.Client(t, srv.RootToken)
	if err := root.Sys().PutPolicyWithContext(ctx, mount+"-writer", writerPolicy(mount)); err != nil {
		t.Fatal(err)
	}
	writer := srv.Client(t, srv.Token(t, mount+"-writer"))

	for _, tc := range []struct {
		name   string
		client *api.Client
		seq    int64
	}{
		{"root token: check-and-set", root, 1},
		{"create-only policy: no update", writer, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewVaultStore(tc.client, mount)
			prev := ZeroHash
			if tc.seq > 1 {
				evs, err := s.Read(ctx, tc.seq-2)
				if err != nil || len(evs) != 1 {
					t.Fatalf("Read = %v, %v", evs, err)
				}
				prev = evs[0].Hash
			}
			ev := testEvent(t, tc.seq, prev)
			if err := s.Append(ctx, ev); err != nil {
				t.Fatalf("first Append: %v", err)
			}
			// A second writer (no cache) loses the race for the same seq.
			other := NewVaultStore(tc.client, mount)
			ev2 := ev
			ev2.Reason = "overwrite"
			if err := other.Append(ctx, ev2); !errors.Is(err, ErrSeqTaken) {
				t.Fatalf("second Append = %v, want ErrSeqTaken", err)
			}
			evs, err := other.Read(ctx, tc.seq-1)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0] != ev {
				t.Fatalf("Read = %+v, want [%+v]", evs, ev)
			}
		})
	}

	// keyd-server's kind of token can neither overwrite nor delete an entry.
	path := mount + "/data/audit/000000000001"
	if _, err := writer.Logical().WriteWithContext(ctx, path, map[string]any{"data": map[string]any{"seq": 1}}); err == nil {
		t.Error("writer overwrote an entry without check-and-set")
	}
	if _, err := writer.Logical().DeleteWithContext(ctx, path); err == nil {
		t.Error("writer deleted an entry")
	}
	if _, err := writer.Logical().DeleteWithContext(ctx, mount+"/metadata/audit/000000000001"); err == nil {
		t.Error("writer deleted an entry's metadata")
	}
	if err := VerifyStore(ctx, NewVaultStore(root, mount), []KeyVersion{{Version: 1, KID: "k"}, {Version: 2, KID: "k"}}); err != nil {
		t.Errorf("VerifyStore: %v", err)
	}
}

func TestVaultConcurrentReplicas(t *testing.T) {
	srv := vaulttest.StartShared(t)
	mount := mountKV(t, srv)
	a := NewVaultStore(srv.Client(t, srv.RootToken), mount)
	b := NewVaultStore(srv.Client(t, srv.RootToken), mount)
	concurrentReplicas(t, a, b, 200)
	// An auditor reading with a fresh store (nothing cached) sees the same chain.
	if err := VerifyStore(context.Background(), NewVaultStore(srv.Client(t, srv.RootToken), mount), nil); err != nil {
		t.Fatalf("VerifyStore: %v", err)
	}
}

func TestVaultStoreTamper(t *testing.T) {
	srv := vaulttest.StartShared(t)
	ctx := context.Background()
	root := srv.Client(t, srv.RootToken)

	setup := func(t *testing.T) (string, []Event) {
		mount := mountKV(t, srv)
		l := NewLog(NewVaultStore(root, mount), fixedClock())
		var evs []Event
		for v := 1; v <= 5; v++ {
			ev, err := l.Record(ctx, Event{Type: Created, Version: v, KID: fmt.Sprintf("kid-%d", v), Actor: "scheduler"})
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		return mount, evs
	}
	entry := func(mount string, seq int64) string { return fmt.Sprintf("%s/data/audit/%012d", mount, seq) }

	tests := []struct {
		name    string
		tamper  func(t *testing.T, mount string, evs []Event)
		seq     int64
		problem Problem
		readErr error
	}{
		{
			name: "delete an entry",
			tamper: func(t *testing.T, mount string, evs []Event) {
				if _, err := root.Logical().DeleteWithContext(ctx, entry(mount, 3)); err != nil {
					t.Fatal(err)
				}
			},
			seq: 3, problem: Deleted,
		},
		{
			name: "destroy an entry with its metadata",
			tamper: func(t *testing.T, mount string, evs []Event) {
				if _, err := root.Logical().DeleteWithContext(ctx, mount+"/metadata/audit/000000000002"); err != nil {
					t.Fatal(err)
				}
			},
			seq: 2, problem: Deleted,
		},
		{
			name: "edit an entry",
			tamper: func(t *testing.T, mount string, evs []Event) {
				ev := evs[3]
				ev.Actor = "nobody"
				data, _ := eventData(ev)
				if _, err := root.Logical().WriteWithContext(ctx, entry(mount, 4), map[string]any{"data": data}); err != nil {
					t.Fatal(err)
				}
			},
			seq: 4, problem: Edited,
		},
		{
			name: "entry that is not an event",
			tamper: func(t *testing.T, mount string, evs []Event) {
				if _, err := root.Logical().WriteWithContext(ctx, entry(mount, 6), map[string]any{"data": map[string]any{"seq": "six"}}); err != nil {
					t.Fatal(err)
				}
			},
			readErr: ErrMalformed,
		},
		{
			name: "entry not named by a seq",
			tamper: func(t *testing.T, mount string, evs []Event) {
				if _, err := root.Logical().WriteWithContext(ctx, mount+"/data/audit/7", map[string]any{"data": map[string]any{"x": 1}}); err != nil {
					t.Fatal(err)
				}
			},
			readErr: ErrMalformed,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mount, evs := setup(t)
			if err := VerifyStore(ctx, NewVaultStore(root, mount), nil); err != nil {
				t.Fatalf("VerifyStore(intact) = %v", err)
			}
			tc.tamper(t, mount, evs)
			err := VerifyStore(ctx, NewVaultStore(root, mount), nil)
			if tc.readErr != nil {
				if !errors.Is(err, tc.readErr) {
					t.Fatalf("VerifyStore = %v, want %v", err, tc.readErr)
				}
				return
			}
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Seq != tc.seq || ce.Problem != tc.problem {
				t.Fatalf("VerifyStore = %v, want seq %d %s", err, tc.seq, tc.problem)
			}
		})
	}

	t.Run("tail cut off", func(t *testing.T) {
		mount, _ := setup(t)
		if _, err := root.Logical().DeleteWithContext(ctx, mount+"/metadata/audit/000000000005"); err != nil {
			t.Fatal(err)
		}
		held := []KeyVersion{{Version: 4, KID: "kid-4"}, {Version: 5, KID: "kid-5"}}
		err := VerifyStore(ctx, NewVaultStore(root, mount), held)
		var re *ReconcileError
		if !errors.As(err, &re) || len(re.Missing) != 1 || re.Missing[0].Version != 5 {
			t.Fatalf("VerifyStore = %v, want version 5 missing", err)
		}
	})
}
