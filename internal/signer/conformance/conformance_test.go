package conformance

import (
	"context"
	"testing"

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
