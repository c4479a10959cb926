package vault

import (
	"testing"

	"github.com/openedx-keyd/keyd/internal/signer/signertest"
)

// TestPropagationStore: two replicas' backends on one Vault, with the
// keyd-server policy's token (create-only confirmations and activations,
// check-and-set observations).
func TestPropagationStore(t *testing.T) {
	e := setup(t, "ES256")
	other := e.newBackend(t, e.srv.Client(t, e.serverToken), nil)
	signertest.TestPropagationStore(t, e.backend, other)
}
