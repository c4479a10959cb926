package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The uid the container image runs keyd as; the tests run keyd as it when
// they run as root (root writes anywhere).
const nonrootUID = 65532

// serveAs runs `keyd serve` on dataDir until it exits (30 s at most) as uid
// (-1: this process's) and returns its stderr and exit code.
func serveAs(t *testing.T, bin string, uid int, dataDir string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:"+strconv.Itoa(freePort(t)), "--data-dir", dataDir)
	cmd.Env = keydEnv()
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("keyd serve on an unusable data dir still ran after 30s:\n%s", stderr.String())
	}
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run keyd: %v", err)
	}
	return stderr.String(), code
}

// binForUID returns a keyd binary that uid can execute: the test's own when
// it runs as that uid, else a copy in a directory everyone can read.
func binForUID(t *testing.T) (bin string, uid int) {
	t.Helper()
	if os.Getuid() != 0 {
		return keydBin, -1
	}
	dir := openDir(t)
	raw, err := os.ReadFile(keydBin)
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "keyd")
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, nonrootUID
}

// openDir is a temporary directory every uid can enter (t.TempDir's parent
// is not), removed when the test ends.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "keyd-datadir-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestServeUnwritableDataDir: a data dir keyd cannot write (owned by someone
// else, as a root-owned volume is for the image's uid 65532) is one line on
// stderr naming the path, the uid and the fix, and a non-zero exit; no stack
// trace, nothing written.
func TestServeUnwritableDataDir(t *testing.T) {
	bin, uid := binForUID(t)
	want := uid
	if uid < 0 {
		want = os.Getuid()
	}
	parent := openDir(t)
	for _, tc := range []struct{ name, dir string }{
		{"existing dir", filepath.Join(parent, "data")},
		{"dir to create", filepath.Join(parent, "locked", "data")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			owned := filepath.Dir(tc.dir)
			if tc.name == "existing dir" {
				owned = tc.dir
			}
			// Owned by this process (root when uid is 65532), writable by it only.
			if err := os.MkdirAll(owned, 0o755); err != nil {
				t.Fatal(err)
			}
			if uid < 0 { // not root: take the write bit away from ourselves
				if err := os.Chmod(owned, 0o555); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Chmod(owned, 0o755) })
			}
			stderr, code := serveAs(t, bin, uid, tc.dir)
			if code == 0 {
				t.Fatalf("keyd serve exited 0 on a data dir it cannot write; stderr:\n%s", stderr)
			}
			msg := strings.TrimSpace(stderr)
			if strings.Contains(msg, "\n") || strings.Contains(msg, "goroutine") || strings.Contains(msg, "panic") {
				t.Fatalf("want one line on stderr, got:\n%s", stderr)
			}
			for _, s := range []string{tc.dir, "uid " + strconv.Itoa(want), "chown -R " + strconv.Itoa(want) + " " + tc.dir} {
				if !strings.Contains(msg, s) {
					t.Errorf("the line does not say %q: %s", s, msg)
				}
			}
			if entries, _ := os.ReadDir(tc.dir); len(entries) != 0 {
				t.Errorf("keyd wrote %d entries in the data dir it reported as unwritable", len(entries))
			}
		})
	}
}

// TestSecondServeOnOneDataDirRefused: two keyd processes on one local data
// dir would both sign and rotate from the same files; the second is refused
// with one line naming the first one's pid, and once the first is gone (even
// killed, leaving its lock file behind) a new one starts.
func TestSecondServeOnOneDataDirRefused(t *testing.T) {
	dataDir := t.TempDir()
	first := startKeyd(t, dataDir, nil)

	stderr, code := serveAs(t, keydBin, -1, dataDir)
	if code == 0 {
		t.Fatalf("a second keyd serve on %s exited 0; stderr:\n%s", dataDir, stderr)
	}
	msg := strings.TrimSpace(stderr)
	if strings.Contains(msg, "\n") {
		t.Fatalf("want one line on stderr, got:\n%s", stderr)
	}
	for _, s := range []string{dataDir, "another keyd process", "pid " + strconv.Itoa(first.cmd.Process.Pid)} {
		if !strings.Contains(msg, s) {
			t.Errorf("the line does not say %q: %s", s, msg)
		}
	}
	// The first one is unharmed.
	if code, _ := first.call(t, "GET", "/readyz", "", ""); code != 200 {
		t.Errorf("the first keyd's /readyz = %d after the second was refused, want 200", code)
	}

	// Killed, not stopped: the kernel releases the lock with the process.
	first.cmd.Process.Kill()
	<-first.done
	second := startKeyd(t, dataDir, nil)
	second.stop(t)
}

// TestVersion: keyd --version prints one line "keyd <version>" (the tools
// image runs it in its shell check).
func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		stdout, stderr, code := runKeyd(t, "", nil, arg)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "keyd ") || strings.Count(stdout, "\n") != 1 {
			t.Errorf("keyd %s: code %d, stdout %q, stderr %q; want 0 and one line \"keyd <version>\"", arg, code, stdout, stderr)
		}
	}
}
