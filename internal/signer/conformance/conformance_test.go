package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/local"
	"github.com/openedx-keyd/keyd/internal/signer/vault"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
)

func TestMain(m *testing.M) { vaulttest.Main(m) }

func TestLocal(t *testing.T) {
	for _, alg := range signer.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			Run(t, alg, func(t *testing.T) Env {
				b, err := local.New(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				return Env{Backend: b}
			})
		})
	}
}

// TestVault runs the suite on a real Vault with keyd's own token (policy
// keyd-server) as the backend's and an LMS token as the signer.
func TestVault(t *testing.T) {
	v := vaulttest.StartShared(t)
	for _, alg := range signer.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			Run(t, alg, func(t *testing.T) Env {
				opts := vault.BootstrapOptions{Algorithm: alg, Mount: vaulttest.UniqueName("transit"), Key: "keyd-jwt", KVMount: vaulttest.UniqueName("keyd")}
				if _, err := vault.Bootstrap(context.Background(), v.Client(t, v.RootToken), opts); err != nil {
					t.Fatal(err)
				}
				b, err := vault.New(vault.Config{Client: v.Client(t, v.Token(t, "keyd-server")), Mount: opts.Mount, Key: opts.Key, KVMount: opts.KVMount, Algorithm: alg})
				if err != nil {
					t.Fatal(err)
				}
				return Env{Backend: b, Cred: signer.Credential{Token: v.Token(t, "keyd-lms-signer")}}
			})
		})
	}
}

// TestVaultRecordlessVersionGetsOneRecord: a version made in Vault without
// its lifecycle record (a crash between rotate and the record write) gets
// one record, written by the first replica that sees it, and every replica
// follows that record rather than its own settings.
func TestVaultRecordlessVersionGetsOneRecord(t *testing.T) {
	v := vaulttest.StartShared(t)
	ctx := context.Background()
	opts := vault.BootstrapOptions{Algorithm: signer.ES256, Mount: vaulttest.UniqueName("transit"), Key: "keyd-jwt", KVMount: vaulttest.UniqueName("keyd")}
	root := v.Client(t, v.RootToken)
	if _, err := vault.Bootstrap(ctx, root, opts); err != nil {
		t.Fatal(err)
	}
	replica := func(delay time.Duration) *rotation.Manager {
		b, err := vault.New(vault.Config{Client: v.Client(t, v.Token(t, "keyd-server")), Mount: opts.Mount, Key: opts.Key, KVMount: opts.KVMount, Algorithm: signer.ES256})
		if err != nil {
			t.Fatal(err)
		}
		r := rules(t)
		r.PropagationDelay = delay
		m, err := rotation.New(rotation.Config{Backend: b, Rules: r, Algorithm: signer.ES256, Events: events{}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := replica(10*time.Minute), replica(5*time.Minute)
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write(opts.Mount+"/keys/keyd-jwt/rotate", nil); err != nil { // version 2, no record
		t.Fatal(err)
	}
	if err := b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	pa, pb := a.Snapshot().Keys, b.Snapshot().Keys
	if len(pa) != 2 || len(pb) != 2 || !pa[1].HasRecord {
		t.Fatalf("version 2 has no record: %+v", pa)
	}
	if !pa[1].ActivatesAt.Equal(pb[1].ActivatesAt) || pa[1].ActivatesAt.Sub(pa[1].CreatedAt) < 5*time.Minute {
		t.Fatalf("replicas follow different records: %v vs %v (created %v)", pa[1].ActivatesAt, pb[1].ActivatesAt, pa[1].CreatedAt)
	}
	if pa[1].State != rotation.Pending {
		t.Fatalf("a version without a record signs at once: %s", pa[1].State)
	}
	if !a.ConfigMismatch() || b.ConfigMismatch() {
		t.Fatalf("mismatch: a=%v b=%v; want a (10m) to report it, b (5m, wrote the record) not", a.ConfigMismatch(), b.ConfigMismatch())
	}
}
