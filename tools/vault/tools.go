//go:build tools

// Package tools pins the Vault server that keyd's tests start as bin/vault.
// It lives in its own module so Vault's large dependency graph never enters
// keyd's go.mod.
package tools

import _ "github.com/hashicorp/vault"
