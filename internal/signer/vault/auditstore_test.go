package vault

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"golang.org/x/sync/errgroup"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
)

// mountAuditKV mounts a fresh KV v2 engine on the shared dev server, as
// bootstrap does, and waits until it answers.
func mountAuditKV(t *testing.T, srv *vaulttest.Server) string {
	t.Helper()
	name := vaulttest.UniqueName("audit-kv")
	if err := kvV2Mount(srv.Client(t, srv.RootToken), name).enable(context.Background()); err != nil {
		t.Fatalf("mount %s: %v", name, err)
	}
	return name
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

func testEvent(t *testing.T, seq int64, prev string) audit.Event {
	t.Helper()
	ev := audit.Event{Seq: seq, Time: "2025-03-01T11:30:45Z", Type: audit.Created, KID: "k", Version: int(seq), Actor: "admin", Reason: "test", PrevHash: prev}
	h, err := audit.Hash(ev)
	if err != nil {
		t.Fatal(err)
	}
	ev.Hash = h
	return ev
}

func TestAuditStoreCreateOnly(t *testing.T) {
	srv := vaulttest.StartShared(t)
	mount := mountAuditKV(t, srv)
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
			s := NewAuditStore(tc.client, mount)
			prev := audit.ZeroHash
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
			other := NewAuditStore(tc.client, mount)
			ev2 := ev
			ev2.Reason = "overwrite"
			if err := other.Append(ctx, ev2); !errors.Is(err, audit.ErrSeqTaken) {
				t.Fatalf("second Append = %v, want audit.ErrSeqTaken", err)
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
	if err := audit.VerifyStore(ctx, NewAuditStore(root, mount), []audit.KeyVersion{{Version: 1, KID: "k"}, {Version: 2, KID: "k"}}); err != nil {
		t.Errorf("VerifyStore: %v", err)
	}
}

func TestAuditStoreConcurrentReplicas(t *testing.T) {
	srv := vaulttest.StartShared(t)
	mount := mountAuditKV(t, srv)
	a := NewAuditStore(srv.Client(t, srv.RootToken), mount)
	b := NewAuditStore(srv.Client(t, srv.RootToken), mount)
	// Two replicas, each with its own store, record the same events from
	// several goroutines: the chain holds each exactly once.
	const n, workers = 200, 4
	var taken atomic.Int64
	var g errgroup.Group
	for _, s := range []*AuditStore{a, b} {
		l := audit.NewLog(countTaken{s, &taken}, nil)
		for w := range workers {
			g.Go(func() error {
				for v := 1 + w; v <= n; v += workers {
					if _, err := l.Record(context.Background(), audit.Event{Type: audit.Created, Version: v, KID: fmt.Sprintf("kid-%d", v), Actor: "scheduler"}); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d appends lost a race and were retried", taken.Load())
	evs, err := a.Read(context.Background(), 0)
	if err != nil || len(evs) != n {
		t.Fatalf("Read = %d events, %v; want %d", len(evs), err, n)
	}
	// An auditor reading with a fresh store (nothing cached) sees the same chain.
	if err := audit.VerifyStore(context.Background(), NewAuditStore(srv.Client(t, srv.RootToken), mount), nil); err != nil {
		t.Fatalf("VerifyStore: %v", err)
	}
}

func TestAuditStoreTamper(t *testing.T) {
	srv := vaulttest.StartShared(t)
	ctx := context.Background()
	root := srv.Client(t, srv.RootToken)

	setup := func(t *testing.T) (string, []audit.Event) {
		mount := mountAuditKV(t, srv)
		l := audit.NewLog(NewAuditStore(root, mount), clock.NewFake(auditClock()))
		var evs []audit.Event
		for v := 1; v <= 5; v++ {
			ev, err := l.Record(ctx, audit.Event{Type: audit.Created, Version: v, KID: fmt.Sprintf("kid-%d", v), Actor: "scheduler"})
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
		tamper  func(t *testing.T, mount string, evs []audit.Event)
		seq     int64
		problem audit.Problem
		readErr error
	}{
		{
			name: "delete an entry",
			tamper: func(t *testing.T, mount string, evs []audit.Event) {
				if _, err := root.Logical().DeleteWithContext(ctx, entry(mount, 3)); err != nil {
					t.Fatal(err)
				}
			},
			seq: 3, problem: audit.Deleted,
		},
		{
			name: "destroy an entry with its metadata",
			tamper: func(t *testing.T, mount string, evs []audit.Event) {
				if _, err := root.Logical().DeleteWithContext(ctx, mount+"/metadata/audit/000000000002"); err != nil {
					t.Fatal(err)
				}
			},
			seq: 2, problem: audit.Deleted,
		},
		{
			name: "edit an entry",
			tamper: func(t *testing.T, mount string, evs []audit.Event) {
				ev := evs[3]
				ev.Actor = "nobody"
				data, _ := eventData(ev)
				if _, err := root.Logical().WriteWithContext(ctx, entry(mount, 4), map[string]any{"data": data}); err != nil {
					t.Fatal(err)
				}
			},
			seq: 4, problem: audit.Edited,
		},
		{
			name: "entry that is not an event",
			tamper: func(t *testing.T, mount string, evs []audit.Event) {
				if _, err := root.Logical().WriteWithContext(ctx, entry(mount, 6), map[string]any{"data": map[string]any{"seq": "six"}}); err != nil {
					t.Fatal(err)
				}
			},
			readErr: audit.ErrMalformed,
		},
		{
			name: "entry not named by a seq",
			tamper: func(t *testing.T, mount string, evs []audit.Event) {
				if _, err := root.Logical().WriteWithContext(ctx, mount+"/data/audit/7", map[string]any{"data": map[string]any{"x": 1}}); err != nil {
					t.Fatal(err)
				}
			},
			readErr: audit.ErrMalformed,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mount, evs := setup(t)
			if err := audit.VerifyStore(ctx, NewAuditStore(root, mount), nil); err != nil {
				t.Fatalf("audit.VerifyStore(intact) = %v", err)
			}
			tc.tamper(t, mount, evs)
			err := audit.VerifyStore(ctx, NewAuditStore(root, mount), nil)
			if tc.readErr != nil {
				if !errors.Is(err, tc.readErr) {
					t.Fatalf("VerifyStore = %v, want %v", err, tc.readErr)
				}
				return
			}
			var ce *audit.ChainError
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
		held := []audit.KeyVersion{{Version: 4, KID: "kid-4"}, {Version: 5, KID: "kid-5"}}
		err := audit.VerifyStore(ctx, NewAuditStore(root, mount), held)
		var re *audit.ReconcileError
		if !errors.As(err, &re) || len(re.Missing) != 1 || re.Missing[0].Version != 5 {
			t.Fatalf("VerifyStore = %v, want version 5 missing", err)
		}
	})
}

// auditClock is a clock stuck at a known instant.
func auditClock() time.Time {
	return time.Date(2025, 3, 1, 12, 30, 45, 123456789, time.FixedZone("CET", 3600))
}

// countTaken counts the appends that lose the race for a seq.
type countTaken struct {
	*AuditStore
	n *atomic.Int64
}

func (c countTaken) Append(ctx context.Context, ev audit.Event) error {
	err := c.AuditStore.Append(ctx, ev)
	if errors.Is(err, audit.ErrSeqTaken) {
		c.n.Add(1)
	}
	return err
}
