// Package tools holds keyd's build helpers; this test checks that `make test`
// sets up a fresh clone by itself.
package tools

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// copyFiles copies the repository files the Makefile's set-up reads into dir.
func copyFiles(t *testing.T, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		info, _ := os.Stat(filepath.Join("..", f))
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), raw, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

func makeN(t *testing.T, dir string, targets ...string) string {
	t.Helper()
	// PKGS_RACE is given so that make does not run go list outside a module.
	out, err := exec.Command("make", append([]string{"-n", "-C", dir, "PKGS_RACE=./..."}, targets...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("make -n %v: %v\n%s", targets, err, out)
	}
	return string(out)
}

// TestMakeTestSetsUpAFreshClone: on a clone with no node_modules and no
// bin/vault, `make test` first installs the Debian packages, downloads the Go
// modules, runs npm ci for the jose interop test and builds Vault, before any
// test runs.
func TestMakeTestSetsUpAFreshClone(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	dir := t.TempDir()
	copyFiles(t, dir, "Makefile", "tools/setup-debian", "tools/vault/go.mod", "tools/vault/go.sum",
		"interop/js/package.json", "interop/js/package-lock.json")

	out := makeN(t, dir, "test")
	first := -1 // where the first check or test starts
	for _, check := range []string{"gofmt", "go vet", "go test", "pyflakes", "pytest"} {
		if i := strings.Index(out, check); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first < 0 {
		t.Fatalf("make -n test runs no check:\n%s", out)
	}
	for _, step := range []string{
		"tools/setup-debian",
		"go mod download",
		"cd interop/js && npm ci",
		"cd tools/vault && go build",
	} {
		if i := strings.Index(out, step); i < 0 || i > first {
			t.Errorf("make -n test does not run %q before the tests:\n%s", step, out)
		}
	}

	// npm ci again only when the lock file is newer than node_modules.
	marker := filepath.Join(dir, "interop/js/node_modules/.package-lock.json")
	if err := os.MkdirAll(filepath.Dir(marker), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := makeN(t, dir, "npm-packages"); strings.Contains(out, "npm ci") {
		t.Errorf("npm ci with node_modules up to date:\n%s", out)
	}
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "interop/js/package-lock.json"), future, future); err != nil {
		t.Fatal(err)
	}
	if out := makeN(t, dir, "npm-packages"); !strings.Contains(out, "npm ci") {
		t.Errorf("no npm ci with a lock file newer than node_modules:\n%s", out)
	}
}

// TestSetupDebian runs tools/setup-debian with stand-ins for id, dpkg-query
// and apt-get: as root it installs what is missing; otherwise it prints one
// line naming the command to run and fails; with nothing missing it is silent.
func TestSetupDebian(t *testing.T) {
	want := []string{"python3-jwt", "python3-jwcrypto", "docker-compose", "python3-django", "python3-requests", "python3-pytest", "pyflakes3", "iproute2", "nftables"}
	run := func(t *testing.T, uid string, installed bool) (string, string, string, error) {
		t.Helper()
		bin := t.TempDir()
		log := filepath.Join(bin, "apt.log")
		status := "exit 1"
		if installed {
			status = "printf 'install ok installed'"
		}
		for name, script := range map[string]string{
			"id":         "echo " + uid,
			"dpkg-query": status,
			"apt-get":    `echo "$@" >> ` + log,
			"node":       "true",
			"npm":        "true",
		} {
			if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("./setup-debian")
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		apt, _ := os.ReadFile(log)
		return stdout.String(), stderr.String(), string(apt), err
	}

	t.Run("not root, packages missing", func(t *testing.T) {
		stdout, stderr, apt, err := run(t, "1000", false)
		line := strings.TrimSpace(stderr)
		if err == nil || stdout != "" || apt != "" || strings.Contains(line, "\n") || !strings.Contains(line, "apt-get install") {
			t.Fatalf("err %v, stdout %q, apt %q, stderr %q; want a failure with one line naming apt-get install", err, stdout, apt, stderr)
		}
		for _, p := range want {
			if !strings.Contains(line, p) {
				t.Errorf("the line does not name %s: %s", p, line)
			}
		}
	})
	t.Run("root, packages missing", func(t *testing.T) {
		if exec.Command("/usr/bin/python3", "-c", "import jwt, jwcrypto").Run() != nil {
			t.Skip("the script checks /usr/bin/python3 after installing, which lacks jwt here")
		}
		_, stderr, apt, err := run(t, "0", false)
		if err != nil || !strings.Contains(apt, "install") {
			t.Fatalf("err %v, apt-get calls %q, stderr %q", err, apt, stderr)
		}
		for _, p := range want {
			if !strings.Contains(apt, p) {
				t.Errorf("apt-get install does not name %s: %s", p, apt)
			}
		}
	})
	t.Run("nothing missing", func(t *testing.T) {
		stdout, stderr, apt, err := run(t, "1000", true)
		if err != nil || stdout != "" || stderr != "" || apt != "" {
			t.Errorf("err %v, stdout %q, stderr %q, apt %q; want silence", err, stdout, stderr, apt)
		}
	})
}
