package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/server"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/vault"
)

// vaultFlagSet holds the Vault names shared by bootstrap and audit verify.
type vaultFlagSet struct {
	raw  map[string]*string
	tok  *string
	envs []string // where the token comes from without --token, in order
}

// vaultFlags registers the Vault names, names among the serve settings, and
// --token, which otherwise comes from the first of envs that is set.
func vaultFlags(fs *flag.FlagSet, envs []string, names ...string) *vaultFlagSet {
	return &vaultFlagSet{
		raw:  config.Flags(fs, append(names, "vault-mount", "vault-key", "vault-kv-mount")...),
		tok:  fs.String("token", "", "Vault token (default: "+strings.Join(envs, ", then ")+")"),
		envs: envs,
	}
}

func (v *vaultFlagSet) get(name string) string { return *v.raw[name] }

// token is --token, else the first of envs that is set.
func (v *vaultFlagSet) token() string {
	tok := *v.tok
	for _, env := range v.envs {
		tok = cmp.Or(tok, os.Getenv(env))
	}
	return tok
}

// cmdBootstrap is `keyd bootstrap`: idempotent Vault setup with an
// operator's token.
func cmdBootstrap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	vf := vaultFlags(fs, []string{"VAULT_TOKEN"}, "algorithm") // the operator's token
	approle := fs.Bool("approle", false, "also enable AppRole and write the keyd-server role keyd serve logs in with (--vault-auth approle)")
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	alg, err := signer.ParseAlgorithm(vf.get("algorithm"))
	if err != nil {
		fmt.Fprintln(stderr, "keyd bootstrap: --algorithm:", err)
		return 2
	}
	client, err := vault.ClientFromEnv(vf.token())
	if err != nil {
		return fail(stderr, err)
	}
	lines, err := vault.Bootstrap(ctx, client, vault.BootstrapOptions{
		Algorithm: alg, Mount: vf.get("vault-mount"), Key: vf.get("vault-key"), KVMount: vf.get("vault-kv-mount"),
	})
	if err == nil && *approle {
		var more []string
		more, err = vault.BootstrapAppRole(ctx, client)
		lines = append(lines, more...)
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

// verifyVaultChain checks the chain in KV with the auditor's own token,
// without trusting keyd, and reconciles it with the transit key's versions.
// A Vault error is one line naming the path and Vault's reason.
func verifyVaultChain(ctx context.Context, vf *vaultFlagSet) error {
	return vault.Explain(checkVaultChain(ctx, vf))
}

func checkVaultChain(ctx context.Context, vf *vaultFlagSet) error {
	v, err := inspectVaultChain(ctx, vf)
	if err != nil {
		return err
	}
	return v.Err()
}

// inspectVaultChain reads the chain in KV and the transit key's versions
// with the auditor's own token and inspects them: what `keyd audit verify
// --vault` and `keyd audit report --vault` share.
func inspectVaultChain(ctx context.Context, vf *vaultFlagSet) (audit.Verification, error) {
	b, store, err := vault.OpenAudited(vf.token(), vf.get("vault-mount"), vf.get("vault-key"), vf.get("vault-kv-mount"))
	if err != nil {
		return audit.Verification{}, err
	}
	versions, err := server.HeldVersions(ctx, b)
	if err != nil {
		return audit.Verification{}, fmt.Errorf("read the key versions: %w", err)
	}
	// The propagation decisions, before the events (as the keys): each
	// must have its event.
	decisions, err := server.StoredDecisions(ctx, b, time.Now())
	if err != nil {
		return audit.Verification{}, fmt.Errorf("read the propagation decisions (the auditor token needs the current keyd-auditor policy: rerun keyd bootstrap to update it): %w", err)
	}
	v, err := audit.InspectStore(ctx, store, versions)
	if err != nil {
		return audit.Verification{}, err
	}
	v.CheckDecisions(decisions)
	v.NotChecked = append(v.NotChecked, vaultNotChecked)
	return v, nil
}

// vaultNotChecked is what a check of the Vault chain cannot see.
const vaultNotChecked = "a cut-off tail after the newest key event: the Vault chain has no head recorded beside the keys " +
	"(keyd's own policy cannot update or delete entries, but a Vault operator's can)"
