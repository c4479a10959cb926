package vault

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/api"
)

// Bootstrap's mounts: the transit and KV v2 engines and the AppRole auth
// method, each ensured by the one ensureMount.

// mount is a secrets engine or auth method keyd needs at a path, as
// bootstrap ensures it.
type mount struct {
	label string // names it in bootstrap's lines: "transit mount", "kv v2 mount", "approle auth"
	path  string // without the trailing slash
	// fits says why an existing mount of this type and options cannot
	// serve (nil when it can).
	fits func(typ string, options map[string]string) error
	// enable creates the mount; its error names the failed step.
	enable func(ctx context.Context) error
}

// mountState is what Vault lists about an existing mount.
type mountState struct {
	typ     string
	options map[string]string
}

// ensureMount is the one "the mount exists" step of bootstrap: it enables m
// when existing has nothing at its path, or checks the mount there. It
// returns bootstrap's line for it.
func ensureMount(ctx context.Context, existing map[string]mountState, m mount) (string, error) {
	cur, ok := existing[m.path+"/"]
	if !ok {
		if err := m.enable(ctx); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s/: created", m.label, m.path), nil
	}
	if err := m.fits(cur.typ, cur.options); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %s/: exists", m.label, m.path), nil
}

// secretMounts lists the secrets engines of client's Vault.
func secretMounts(ctx context.Context, client *api.Client) (map[string]mountState, error) {
	mounts, err := client.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return nil, wrap("list mounts", err)
	}
	out := make(map[string]mountState, len(mounts))
	for p, m := range mounts {
		if m != nil {
			out[p] = mountState{typ: m.Type, options: m.Options}
		}
	}
	return out, nil
}

// authMounts lists the auth methods of client's Vault.
func authMounts(ctx context.Context, client *api.Client) (map[string]mountState, error) {
	auths, err := client.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return nil, wrap("list auth methods", err)
	}
	out := make(map[string]mountState, len(auths))
	for p, m := range auths {
		if m != nil {
			out[p] = mountState{typ: m.Type, options: m.Options}
		}
	}
	return out, nil
}

// transitMount is keyd's transit engine at path.
func transitMount(client *api.Client, path string) mount {
	return mount{
		label: "transit mount",
		path:  path,
		fits: func(typ string, _ map[string]string) error {
			if typ != "transit" {
				return fmt.Errorf("vault: mount %s/ is a %s mount, not transit", path, typ)
			}
			return nil
		},
		enable: func(ctx context.Context) error {
			err := client.Sys().MountWithContext(ctx, path, &api.MountInput{Type: "transit", Description: "keyd signing keys"})
			return wrap("enable transit at "+path, err)
		},
	}
}

// kvV2Mount is keyd's KV version 2 engine at path.
func kvV2Mount(client *api.Client, path string) mount {
	return mount{
		label: "kv v2 mount",
		path:  path,
		fits: func(typ string, options map[string]string) error {
			switch {
			case typ != "kv" && typ != "generic":
				return fmt.Errorf("vault: mount %s/ is a %s mount, not kv version 2", path, typ)
			case options["version"] != "2":
				return fmt.Errorf("vault: mount %s/ is kv version 1; keyd needs kv version 2 (upgrade it with `vault kv enable-versioning %s/`)", path, path)
			}
			return nil
		},
		enable: func(ctx context.Context) error {
			in := &api.MountInput{Type: "kv", Description: "keyd lifecycle records, rotation claims and audit", Options: map[string]string{"version": "2"}}
			if err := client.Sys().MountWithContext(ctx, path, in); err != nil {
				return wrap("enable kv v2 at "+path, err)
			}
			return waitKVReady(ctx, client, path)
		},
	}
}

// appRoleMount is the AppRole auth method at AppRoleMount.
func appRoleMount(client *api.Client) mount {
	return mount{
		label: "approle auth",
		path:  AppRoleMount,
		fits: func(typ string, _ map[string]string) error {
			if typ != "approle" {
				return fmt.Errorf("vault: auth mount %s/ is %s, not approle", AppRoleMount, typ)
			}
			return nil
		},
		enable: func(ctx context.Context) error {
			err := client.Sys().EnableAuthWithOptionsWithContext(ctx, AppRoleMount, &api.EnableAuthOptions{Type: "approle", Description: "keyd and the LMS"})
			return wrap("enable approle", err)
		},
	}
}
