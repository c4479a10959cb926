package conformance

import (
	"testing"

	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
)

func TestMain(m *testing.M) { vaulttest.Main(m) }

func TestLocal(t *testing.T) {
	for _, alg := range signer.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			Run(t, alg, func(t *testing.T) Env { return Local(t, alg) })
		})
	}
}

// TestVault runs the suite on a real Vault with keyd's own token (policy
// keyd-server) as the backend's and an LMS token as the signer.
func TestVault(t *testing.T) {
	for _, alg := range signer.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			Run(t, alg, func(t *testing.T) Env { return Vault(t, alg) })
		})
	}
}
