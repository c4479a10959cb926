package tools

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/testkeyd"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
)

// TestMain stops the shared Vault dev server the doc tests start.
func TestMain(m *testing.M) { vaulttest.Main(m) }

// shBlocks returns the ```sh blocks of a doc under docs/, in order.
func shBlocks(t *testing.T, doc string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docs", doc))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur []string
	in := false
	for _, l := range strings.Split(string(raw), "\n") {
		switch {
		case !in && strings.HasPrefix(l, "```sh"):
			in, cur = true, nil
		case in && strings.HasPrefix(l, "```"):
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, l)
		}
	}
	return blocks
}

// blockWith returns the one block holding s.
func blockWith(t *testing.T, blocks []string, s string) string {
	t.Helper()
	var found []string
	for _, b := range blocks {
		if strings.Contains(b, s) {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d sh blocks hold %q, want 1", len(found), s)
	}
	return found[0]
}

// runBash runs script with bash -e in dir, with env added and bin dirs first
// on PATH; it returns the output and whether it succeeded.
func runBash(t *testing.T, dir, script string, env []string, binDirs ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+strings.Join(append(binDirs, os.Getenv("PATH")), ":"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the script did not finish within 60s:\n%s", out)
	}
	return string(out), err == nil
}

// binDir returns a dir holding keyd (built) and, when vault is set, vault.
func binDir(t *testing.T, vault string) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := testkeyd.Build(dir); err != nil {
		t.Fatal(err)
	}
	if vault != "" {
		if err := os.Symlink(vault, filepath.Join(dir, "vault")); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestIntegrationGuideAppRoleRuns runs the LMS AppRole block of
// docs/openedx-integration.md against a real Vault after keyd's own AppRole
// set-up (`keyd bootstrap --approle`, operations.md): it must work in that
// order (AppRole is then already enabled), and write the secret ID to a file
// only its owner can read.
func TestIntegrationGuideAppRoleRuns(t *testing.T) {
	block := blockWith(t, shBlocks(t, "openedx-integration.md"), "auth/approle/role/lms ")
	srv := vaulttest.Start(t)
	vault, err := vaulttest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	bin := binDir(t, vault)
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"VAULT_ADDR=" + srv.Addr, "VAULT_TOKEN=" + srv.RootToken}
	if out, ok := runBash(t, dir, "keyd bootstrap --approle", env, bin); !ok {
		t.Fatalf("keyd bootstrap --approle:\n%s", out)
	}
	script := "umask 022\n" + strings.ReplaceAll(block, "/run/secrets/", secrets+"/")
	out, ok := runBash(t, dir, script, env, bin)
	if !ok {
		t.Fatalf("the guide's AppRole block fails after keyd bootstrap --approle:\n%s\n%s", block, out)
	}
	info, err := os.Stat(filepath.Join(secrets, "keyd-lms-secret-id"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() == 0 || info.Mode().Perm()&0o077 != 0 {
		t.Errorf("the secret ID file: %d bytes, mode %04o; want a secret readable by its owner alone", info.Size(), info.Mode().Perm())
	}
}

// TestRunbookCheckUsesTheSetUp runs step 5's signing check of
// docs/runbook-emergency.md against a local keyd whose --issuer is the one
// the set-up block names (changed here to another value): the steps must
// take the issuer and audience from the set-up, never hard-code them.
func TestRunbookCheckUsesTheSetUp(t *testing.T) {
	blocks := shBlocks(t, "runbook-emergency.md")
	setup := blockWith(t, blocks, "INCIDENT=")
	check := blockWith(t, blocks, "keyd sign")
	const issuer = "https://courses.test.invalid/oauth2"
	var vars []string
	for _, l := range strings.Split(setup, "\n") {
		switch {
		case strings.HasPrefix(l, "ISSUER="):
			vars = append(vars, "ISSUER="+issuer)
		case strings.HasPrefix(l, "AUDIENCE="):
			vars = append(vars, strings.Fields(l)[0])
		}
	}
	if len(vars) == 0 {
		t.Fatalf("the set-up block names no ISSUER:\n%s", setup)
	}
	for i, b := range blocks {
		if b != setup && strings.Contains(b, "example.com/oauth2") {
			t.Errorf("sh block %d hard-codes an issuer instead of taking $ISSUER from the set-up:\n%s", i, b)
		}
	}
	bin := binDir(t, "")
	signer := strings.Repeat("s", 40)
	k := testkeyd.Start(t, filepath.Join(bin, "keyd"), []string{"KEYD_SIGNER_TOKEN=" + signer},
		"--data-dir", t.TempDir(), "--issuer", issuer)
	var lines []string
	for _, l := range strings.Split(check, "\n") {
		if !strings.Contains(l, "vault write") { // the Vault login: KEYD_TOKEN below instead
			lines = append(lines, l)
		}
	}
	script := strings.Join(vars, "\n") + "\nKEYD=" + k.URL + "\nexport KEYD_TOKEN=" + signer + "\n" + strings.Join(lines, "\n")
	if out, ok := runBash(t, t.TempDir(), script, nil, bin); !ok {
		t.Errorf("step 5's check fails against a keyd of the set-up's issuer:\n%s\n%s", script, out)
	}
}
