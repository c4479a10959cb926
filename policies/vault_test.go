package policies_test

import (
	"context"
	"testing"

	"github.com/openedx-keyd/keyd/internal/vaulttest"
	"github.com/openedx-keyd/keyd/policies"
)

// Vault parses every rendered policy and stores it verbatim.
func TestVaultAcceptsPolicies(t *testing.T) {
	srv := vaulttest.Start(t)
	root := srv.Client(t, srv.RootToken)
	rendered, err := policies.Render("transit", "keyd-jwt", "keyd")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, text := range rendered {
		if err := root.Sys().PutPolicyWithContext(ctx, name, text); err != nil {
			t.Fatalf("vault refused policy %s: %v", name, err)
		}
		got, err := root.Sys().GetPolicyWithContext(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got != text {
			t.Errorf("policy %s stored as\n%s\nwant\n%s", name, got, text)
		}
	}
}
