package vault

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/policies"
)

// BootstrapOptions says what `keyd bootstrap` sets up. Empty names take the
// defaults of Config.
type BootstrapOptions struct {
	Algorithm           signer.Algorithm
	Mount, Key, KVMount string
}

// Bootstrap prepares Vault for keyd with an operator's client: the transit
// mount, the signing key (of the type the algorithm needs, not exportable,
// no plaintext backup), the KV v2 mount, and every keyd policy rendered for
// these names. It returns one line per step saying what it did; a second
// run changes nothing and says so ("exists", "unchanged"). A token Vault
// refuses is said to need an operator's rights.
func Bootstrap(ctx context.Context, client *api.Client, opts BootstrapOptions) (_ []string, err error) {
	defer func() { err = needsOperator(err) }()
	mount := cmp.Or(strings.Trim(opts.Mount, "/"), DefaultMount)
	key := cmp.Or(opts.Key, DefaultKey)
	kv := cmp.Or(strings.Trim(opts.KVMount, "/"), DefaultKVMount)
	keyType, err := KeyType(opts.Algorithm)
	if err != nil {
		return nil, err
	}
	rendered, err := policies.Render(mount, key, kv)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}

	mounts, err := secretMounts(ctx, client)
	if err != nil {
		return nil, err
	}
	var did []string
	line, err := ensureMount(ctx, mounts, transitMount(client, mount))
	if err != nil {
		return did, err
	}
	did = append(did, line)
	lines, err := bootstrapKey(ctx, client, mount, key, keyType)
	if err != nil {
		return did, err
	}
	did = append(did, lines...)
	if line, err = ensureMount(ctx, mounts, kvV2Mount(client, kv)); err != nil {
		return did, err
	}
	did = append(did, line)
	lines, err = writePolicies(ctx, client, rendered)
	return append(did, lines...), err
}

// writePolicies writes the rendered policies, compared first so that a
// second run changes nothing. It returns one line per policy.
func writePolicies(ctx context.Context, client *api.Client, rendered map[string]string) ([]string, error) {
	var did []string
	for _, name := range slices.Sorted(maps.Keys(rendered)) {
		current, err := client.Sys().GetPolicyWithContext(ctx, name)
		if err != nil {
			return did, wrap("read policy "+name, err)
		}
		if current == rendered[name] {
			did = append(did, fmt.Sprintf("policy %s: unchanged", name))
			continue
		}
		if err := client.Sys().PutPolicyWithContext(ctx, name, rendered[name]); err != nil {
			return did, wrap("write policy "+name, err)
		}
		did = append(did, fmt.Sprintf("policy %s: written", name))
	}
	return did, nil
}

// operatorHint is what a refused bootstrap says about its token.
const operatorHint = "keyd bootstrap needs an operator's Vault token (--token or VAULT_TOKEN): a root token, " +
	"or one whose policy has the sudo capability, as it enables secrets engines and auth methods and writes ACL policies"

// needsOperator adds operatorHint to a 403 of Vault (an unknown token, or
// one without the rights bootstrap needs); other errors stay as they are.
func needsOperator(err error) error {
	if statusOf(err) != 403 {
		return err
	}
	return fmt.Errorf("%w; %s", err, operatorHint)
}

// bootstrapKey creates the signing key, or checks the existing one.
func bootstrapKey(ctx context.Context, client *api.Client, mount, key, keyType string) ([]string, error) {
	path := transitKeyPath(mount, key)
	sec, err := client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, wrap("read key "+path, err)
	}
	if sec == nil || sec.Data == nil {
		_, err := client.Logical().WriteWithContext(ctx, path, map[string]any{
			"type":                   keyType,
			"exportable":             false,
			"allow_plaintext_backup": false,
		})
		if err != nil {
			return nil, wrap("create key "+path, err)
		}
		return []string{fmt.Sprintf("key %s (%s): created", path, keyType)}, nil
	}

	var ki keyInfo
	if err := decode(sec.Data, &ki); err != nil {
		return nil, fmt.Errorf("vault: decode key %s: %w", path, err)
	}
	switch {
	case ki.Type != keyType:
		return nil, fmt.Errorf("vault: key %s has type %s, but the algorithm needs %s (choose another --vault-key for a new algorithm)", path, ki.Type, keyType)
	case ki.Exportable:
		return nil, fmt.Errorf("vault: key %s is exportable, which cannot be undone; create a new key (another --vault-key)", path)
	case ki.AllowPlaintextBackup:
		return nil, fmt.Errorf("vault: key %s allows plaintext backup, which cannot be undone; create a new key (another --vault-key)", path)
	}
	lines := []string{fmt.Sprintf("key %s (%s): exists", path, keyType)}
	if ki.DeletionAllowed {
		if _, err := client.Logical().WriteWithContext(ctx, keyOpPath(path, "config"), map[string]any{"deletion_allowed": false}); err != nil {
			return nil, wrap("configure key "+path, err)
		}
		lines = append(lines, fmt.Sprintf("key %s: deletion_allowed turned off", path))
	}
	return lines, nil
}

// waitKVReady waits until a new KV v2 mount answers: Vault sets it up in the
// background for a moment after enabling it.
func waitKVReady(ctx context.Context, client *api.Client, kv string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := client.Logical().ReadWithContext(ctx, kvConfigPath(kv))
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return wrap("wait for kv v2 mount "+kv, err)
		}
		select {
		case <-ctx.Done():
			return wrap("wait for kv v2 mount "+kv, errors.Join(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
