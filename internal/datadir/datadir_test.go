package datadir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestOpenLocksTheDir: a second Open of a locked dir (flock locks belong to
// the open file, so this holds within one process too) is an *Error naming
// the holder's pid; after Close the dir opens again.
func TestOpenLocksTheDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("data dir created with %v (%v), want 0700", info.Mode().Perm(), err)
	}
	_, err = Open(dir)
	var dirErr *Error
	if !errors.As(err, &dirErr) {
		t.Fatalf("second Open: %v, want a *datadir.Error", err)
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), filepath.Join(dir, LockFile)) {
		t.Errorf("second Open: %q, want the holder's pid and the lock file", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	again.Close()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != LockFile {
		t.Errorf("data dir holds %v, want only %s (the write check leaves nothing)", entries, LockFile)
	}
}

// TestUnwritableMessages: the line for each way a data dir cannot be written
// names the path, the uid and the fix.
func TestUnwritableMessages(t *testing.T) {
	uid := strconv.Itoa(os.Getuid())
	existing := t.TempDir()
	missing := filepath.Join(existing, "no", "data")
	tests := []struct {
		name string
		path string
		err  error
		want []string
	}{
		{"owned by another user", existing, &fs.PathError{Op: "open", Path: existing + "/.keyd-write-check-1", Err: syscall.EACCES},
			[]string{existing, "uid " + uid, "fix: chown -R " + uid + " " + existing, "permission denied"}},
		{"not created yet", missing, &fs.PathError{Op: "mkdir", Path: filepath.Dir(missing), Err: syscall.EACCES},
			[]string{missing, "uid " + uid, "mkdir -p " + missing + " && chown -R " + uid + " " + missing}},
		{"read-only volume", existing, &fs.PathError{Op: "open", Path: existing + "/.keyd-write-check-1", Err: syscall.EROFS},
			[]string{existing, "read-only file system", "uid " + uid, "mount a writable volume at " + existing + " owned by uid " + uid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := unwritable(tt.path, tt.err)
			if !errors.Is(got, tt.err.(*fs.PathError).Err) {
				t.Errorf("%v does not wrap %v", got, tt.err)
			}
			msg := got.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("message spans lines: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
		})
	}
}

// TestOpenUnwritableDir: a real directory this process cannot write (not
// possible as root, whom the mode does not stop: TestServeUnwritableDataDir
// in cmd/keyd runs keyd as uid 65532 then).
func TestOpenUnwritableDir(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root writes any directory; cmd/keyd's TestServeUnwritableDataDir covers this as uid 65532")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o755)
	_, err := Open(dir)
	var dirErr *Error
	if !errors.As(err, &dirErr) || !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "chown -R") {
		t.Fatalf("Open of a 0555 dir: %v, want a *datadir.Error with the chown fix", err)
	}
}
