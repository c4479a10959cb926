//go:build linux

package vaulttest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes Linux kill Vault when the test binary dies, so a
// crashed or interrupted test run leaves no Vault behind.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
