package local

import (
	"testing"

	"github.com/openedx-keyd/keyd/internal/signer/signertest"
)

// TestPropagationStore: two processes' stores on one data dir.
func TestPropagationStore(t *testing.T) {
	dir := t.TempDir()
	a, err := NewPropagationStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewPropagationStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	signertest.TestPropagationStore(t, a, b)
}
