//go:build !linux

package vaulttest

import "os/exec"

// setDeathSignal does nothing outside Linux: Stop (and Main) end Vault.
func setDeathSignal(*exec.Cmd) {}
