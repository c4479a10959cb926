package local

import (
	"testing"

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
