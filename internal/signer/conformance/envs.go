package conformance

import (
	"context"
	"testing"

	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/local"
	"github.com/openedx-keyd/keyd/internal/signer/vault"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
)

// Local returns a fresh local backend in a temp dir.
func Local(t *testing.T, _ signer.Algorithm) Env {
	t.Helper()
	b, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return Env{Backend: b}
}

// Vault returns a fresh Vault backend on the shared test server (call
// vaulttest.Main from TestMain): a transit key of algorithm alg made by
// keyd bootstrap, keyd's own token (policy keyd-server) as the backend's,
// and an LMS token (keyd-lms-signer) as the signer.
func Vault(t *testing.T, alg signer.Algorithm) Env {
	t.Helper()
	v := vaulttest.StartShared(t)
	opts := VaultOptions(alg)
	if _, err := vault.Bootstrap(context.Background(), v.Client(t, v.RootToken), opts); err != nil {
		t.Fatal(err)
	}
	return Env{Backend: VaultBackend(t, v, opts), Cred: signer.Credential{Token: v.Token(t, "keyd-lms-signer")}}
}

// VaultOptions names a fresh transit and KV mount for a key of alg.
func VaultOptions(alg signer.Algorithm) vault.BootstrapOptions {
	return vault.BootstrapOptions{Algorithm: alg, Mount: vaulttest.UniqueName("transit"), Key: "keyd-jwt", KVMount: vaulttest.UniqueName("keyd")}
}

// VaultBackend is a backend on opts with a new keyd-server token of v: one
// more replica of the same keys.
func VaultBackend(t *testing.T, v *vaulttest.Server, opts vault.BootstrapOptions) *vault.Backend {
	t.Helper()
	b, err := vault.New(vault.Config{Client: v.Client(t, v.Token(t, "keyd-server")), Mount: opts.Mount, Key: opts.Key, KVMount: opts.KVMount, Algorithm: opts.Algorithm})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
