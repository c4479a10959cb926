package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openedx-keyd/keyd/internal/fsutil"
	"github.com/openedx-keyd/keyd/internal/signer"
)

func (b *Backend) quarantineDir() string { return filepath.Join(b.dir, "quarantine") }

// quarantineKey sets aside the file of version v, which load refused with
// why. It re-reads the file under the lock (another process may have
// destroyed or quarantined it meanwhile) and raises the high-water mark to v
// before moving it, so the number is never given to another key.
func (b *Backend) quarantineKey(v int, why error) error {
	if b.readOnly {
		return b.quarantine(b.keyPath(v), why)
	}
	lock, err := fsutil.LockFile(filepath.Join(b.dir, "lock"))
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	defer lock.Unlock()
	switch _, err := b.load(v); {
	case err == nil || errors.Is(err, signer.ErrNoKey):
		return nil // sound after all, or gone
	case !errors.Is(err, errCorrupt):
		return err // unreadable now: never set aside a file that may be sound
	}
	if b.highWater() < v {
		if err := fsutil.WriteFileAtomic(b.highWaterPath(), []byte(strconv.Itoa(v)), 0o600); err != nil {
			return fmt.Errorf("local: write version counter: %w", err)
		}
	}
	if err := b.noteSetAside(v); err != nil {
		return err
	}
	return b.quarantine(b.keyPath(v), why)
}

func (b *Backend) setAsidePath() string { return filepath.Join(b.dir, "keys", "set_aside_versions") }

// noteSetAside adds v to keys/set_aside_versions, the versions whose file
// was ever set aside: they did not vanish unseen, also once an operator has
// examined and removed the file from the quarantine (the audit then still
// accounts for them). The caller holds the lock.
func (b *Backend) noteSetAside(v int) error {
	vs := b.setAsideVersions()
	if slices.Contains(vs, v) {
		return nil
	}
	var sb strings.Builder
	for _, x := range append(vs, v) {
		sb.WriteString(strconv.Itoa(x) + "\n")
	}
	if err := fsutil.WriteFileAtomic(b.setAsidePath(), []byte(sb.String()), 0o600); err != nil {
		return fmt.Errorf("local: record the set-aside version %d: %w", v, err)
	}
	return nil
}

// setAsideVersions reads keys/set_aside_versions (none when absent;
// unreadable lines are skipped).
func (b *Backend) setAsideVersions() []int {
	raw, err := os.ReadFile(b.setAsidePath())
	if err != nil {
		return nil
	}
	var vs []int
	for _, line := range strings.Fields(string(raw)) {
		if v, err := strconv.Atoi(line); err == nil && v > 0 && !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	return vs
}

// quarantine moves path into <dir>/quarantine under a new name and keeps why
// for Problems. The caller holds the lock when other processes may race.
func (b *Backend) quarantine(path string, why error) error {
	if b.readOnly {
		b.mu.Lock()
		b.quarantined["../"+filepath.Base(path)] = why.Error() // reported, not moved
		b.mu.Unlock()
		return nil
	}
	name, err := setAside(b.quarantineDir(), path)
	if err != nil || name == "" {
		return err
	}
	b.mu.Lock()
	b.quarantined[name] = why.Error()
	b.mu.Unlock()
	return nil
}

// setAside moves path into the quarantine dir q under a new name (path's
// base name and the time) and returns that name; "" when path is gone
// (moved or destroyed by another process). The caller holds the lock when
// other processes may race.
func setAside(q, path string) (string, error) { return setAsideAs(q, path, filepath.Base(path)) }

// whyMoved holds, by quarantine path, why this process set a file aside
// when no Backend's own list does (the propagation store's files).
var whyMoved sync.Map

func noteWhy(path, why string) { whyMoved.Store(path, why) }

// setAsideAs is setAside under the name base (and the time).
func setAsideAs(q, path, base string) (string, error) {
	if err := os.MkdirAll(q, 0o700); err != nil {
		return "", fmt.Errorf("local: create quarantine dir: %w", err)
	}
	base += "." + time.Now().UTC().Format("20060102T150405Z")
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		dst := filepath.Join(q, name)
		if _, err := os.Lstat(dst); err == nil && i < 100 {
			continue
		}
		if err := os.Rename(path, dst); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", nil
			}
			return "", fmt.Errorf("local: quarantine %s: %w", path, err)
		}
		if err := fsutil.SyncDir(q); err != nil {
			return "", fmt.Errorf("local: %w", err)
		}
		if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
			return "", fmt.Errorf("local: %w", err)
		}
		return name, nil
	}
}

// Problems describes every file set aside in <dir>/quarantine, with the
// reason when this process moved it. They stay reported until an operator
// has examined and removed them.
func (b *Backend) Problems() []string {
	ents, err := os.ReadDir(b.quarantineDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return []string{fmt.Sprintf("cannot list the quarantine %s: %v", b.quarantineDir(), err)}
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []string
	for name, why := range b.quarantined {
		if rest, ok := strings.CutPrefix(name, "../"); ok { // read-only: left in place
			out = append(out, fmt.Sprintf("unreadable key file %s skipped: %s", filepath.Join(b.dir, "keys", rest), why))
		}
	}
	for _, e := range ents {
		msg := fmt.Sprintf("unreadable file set aside as %s", filepath.Join(b.quarantineDir(), e.Name()))
		why := b.quarantined[e.Name()]
		if w, ok := whyMoved.Load(filepath.Join(b.quarantineDir(), e.Name())); ok && why == "" {
			why = w.(string)
		}
		if why != "" {
			msg += ": " + why
		}
		out = append(out, msg+"; examine it, then remove it from the quarantine")
	}
	sort.Strings(out)
	return out
}

// QuarantinedVersions lists the key versions whose files are in the
// quarantine, or were set aside there and since removed by an operator:
// versions the audit trail knows that did not vanish unseen.
func (b *Backend) QuarantinedVersions() []int {
	vs := b.setAsideVersions()
	var names []string
	ents, _ := os.ReadDir(b.quarantineDir())
	for _, e := range ents {
		names = append(names, e.Name())
	}
	b.mu.RLock()
	for name := range b.quarantined {
		if rest, ok := strings.CutPrefix(name, "../"); ok {
			names = append(names, rest+".") // read-only: skipped in place
		}
	}
	b.mu.RUnlock()
	for _, n := range names {
		name, _, ok := strings.Cut(n, ".json.")
		if !ok {
			continue
		}
		if v, err := strconv.Atoi(name); err == nil && v > 0 && !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	sort.Ints(vs)
	return vs
}
