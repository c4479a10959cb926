// Package datadir opens the local backend's data directory for one keyd
// process: it checks that the process can write there and holds an exclusive
// lock on it for the process's lifetime, so that a wrong volume owner or a
// second keyd on the same directory is one clear error at start.
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the lock file in the data dir.
const LockFile = "keyd.lock"

// Dir is an open, locked data dir. Close releases the lock.
type Dir struct {
	Path string
	lock *os.File
}

// Error says why the data dir cannot be used and what fixes it; its message
// is one line meant for the operator.
type Error struct {
	Path string
	Msg  string
	Err  error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// Open creates path (0700) when missing, checks that this process can write
// in it and takes the lock. A second process on the same directory gets an
// *Error naming the holder's pid; the lock goes with the process (flock), so
// a crashed keyd never leaves a stale one.
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, unwritable(path, err)
	}
	probe, err := os.CreateTemp(path, ".keyd-write-check-*")
	if err != nil {
		return nil, unwritable(path, err)
	}
	probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return nil, unwritable(path, err)
	}
	lockPath := filepath.Join(path, LockFile)
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, unwritable(path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &Error{Path: path, Err: err, Msg: fmt.Sprintf(
				"data dir %s is in use by another keyd process%s (it holds %s): run one keyd per local data dir (replicas need --backend vault), or stop the other one first",
				path, holder(lockPath), lockPath)}
		}
		return nil, &Error{Path: path, Err: err, Msg: fmt.Sprintf("lock %s: %v", lockPath, err)}
	}
	// The holder's pid, for the message a second process prints.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Dir{Path: path, lock: f}, nil
}

// Close releases the lock. The lock file stays: removing it would let a
// process that opened it just before lock a file nobody else sees.
func (d *Dir) Close() error { return d.lock.Close() }

// holder returns " (pid N)" from the lock file, or "" when it says nothing.
func holder(lockPath string) string {
	raw, err := os.ReadFile(lockPath)
	if err != nil {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return ""
	}
	return fmt.Sprintf(" (pid %d)", pid)
}

// unwritable explains a data dir this process cannot write: the path, the
// uid it runs as, and the fix.
func unwritable(path string, err error) *Error {
	uid := os.Getuid()
	abs := path // the fix names the absolute path: keyd may run elsewhere
	if a, aerr := filepath.Abs(path); aerr == nil {
		abs = a
	}
	var msg string
	switch {
	case errors.Is(err, syscall.EROFS):
		msg = fmt.Sprintf("data dir %s is on a read-only file system (keyd runs as uid %d and must write its keys and audit log there): mount a writable volume at %s owned by uid %d",
			path, uid, path, uid)
	case errors.Is(err, fs.ErrPermission):
		fix := fmt.Sprintf("chown -R %d %s", uid, abs)
		if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
			fix = fmt.Sprintf("mkdir -p %s && chown -R %d %s", abs, uid, abs)
		}
		msg = fmt.Sprintf("data dir %s is not writable by uid %d, the user keyd runs as (%v): fix: %s (or run keyd as the directory's owner)",
			path, uid, rootCause(err), fix)
	default:
		msg = fmt.Sprintf("data dir %s cannot be used by uid %d: %v", path, uid, err)
	}
	return &Error{Path: path, Msg: msg, Err: err}
}

// rootCause is "permission denied" rather than the whole wrapped chain, so
// that the line stays short.
func rootCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %w", pe.Op, pe.Path, pe.Err)
	}
	return err
}
