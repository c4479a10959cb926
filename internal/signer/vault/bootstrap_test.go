package vault

import (
	"context"
	"strings"
	"testing"

	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/policies"
)

// TestBootstrapNeedsOperator: a token Vault refuses for bootstrap's steps
// (one without operator rights, or an unknown one) is one error saying that
// an operator's token (root, or a sudo policy) is needed, with Vault's reason.
func TestBootstrapNeedsOperator(t *testing.T) {
	e := setup(t, signer.RS512) // writes the keyd policies
	ctx := context.Background()
	for name, tok := range map[string]string{
		"keyd-admin token": e.srv.Token(t, policies.Admin),
		"token of no role": e.srv.Token(t),
		"unknown token":    "hvs.not-a-token",
	} {
		c := e.srv.Client(t, tok)
		_, err := Bootstrap(ctx, c, e.bootstrapOptions())
		_, errAppRole := BootstrapAppRole(ctx, c)
		for what, err := range map[string]error{"Bootstrap": err, "BootstrapAppRole": errAppRole} {
			if err == nil {
				t.Fatalf("%s: %s succeeded", name, what)
			}
			msg := err.Error()
			for _, want := range []string{"403", "permission denied", "needs an operator's Vault token", "root token", "sudo"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s: %s: %q does not say %q", name, what, msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("%s: %s: not one line: %q", name, what, msg)
			}
		}
	}
	// Other failures say nothing about operators.
	opts := e.bootstrapOptions()
	opts.Algorithm = signer.ES256
	if _, err := Bootstrap(ctx, e.root, opts); err == nil || strings.Contains(err.Error(), "operator") {
		t.Errorf("a wrong key type: %v", err)
	}
}

// TestBootstrapAppRoleHint: the printed way to get a secret ID writes the
// file under umask 077 (never readable by others, not even for a moment),
// and a second run works (AppRole already enabled).
func TestBootstrapAppRoleHint(t *testing.T) {
	e := setup(t, signer.RS512)
	for range 2 {
		lines, err := BootstrapAppRole(context.Background(), e.root)
		if err != nil {
			t.Fatal(err)
		}
		all := strings.Join(lines, "\n")
		if !strings.Contains(all, "(umask 077; vault write -f -field=secret_id auth/approle/role/keyd-server/secret-id > /etc/keyd/secret-id)") ||
			strings.Contains(all, "chmod") {
			t.Errorf("the secret ID hint does not write under umask 077:\n%s", all)
		}
	}
}
