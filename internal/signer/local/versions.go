package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/openedx-keyd/keyd/internal/fsutil"
)

func (b *Backend) highWaterPath() string { return filepath.Join(b.dir, "keys", "latest_version") }

// highWater is the newest version ever created (0 when none).
func (b *Backend) highWater() int {
	raw, err := os.ReadFile(b.highWaterPath())
	if err != nil {
		return 0
	}
	v, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	return v
}

// PinSigning records that versions below v may no longer sign, and Sign
// enforces it: the local twin of Vault's min_encryption_version.
func (b *Backend) PinSigning(ctx context.Context, v int) error {
	if int64(v) <= b.pinned.Load() {
		return nil
	}
	lock, err := fsutil.LockFile(filepath.Join(b.dir, "lock"))
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	defer lock.Unlock()
	if cur := b.minSigning(); cur >= v { // another process pinned as high or higher: never lower it
		b.pinned.Store(int64(cur))
		return nil
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(b.dir, "keys", "min_signing_version"), []byte(strconv.Itoa(v)), 0o600); err != nil {
		return fmt.Errorf("local: pin signing version: %w", err)
	}
	b.pinned.Store(int64(v))
	return nil
}

// followPin raises pinned to the pin file's when another process on this
// data dir has raised it (a replica whose lifecycle loop is stalled must not
// keep signing with a version the others pinned out). It costs one stat.
func (b *Backend) followPin() {
	fi, err := os.Stat(filepath.Join(b.dir, "keys", "min_signing_version"))
	if err != nil {
		return
	}
	mt := fi.ModTime().UnixNano()
	if prev := b.pinSeen.Load(); mt == prev || !b.pinSeen.CompareAndSwap(prev, mt) {
		return
	}
	for p := int64(b.minSigning()); ; {
		cur := b.pinned.Load()
		if p <= cur || b.pinned.CompareAndSwap(cur, p) {
			return
		}
	}
}

func (b *Backend) minSigning() int {
	raw, err := os.ReadFile(filepath.Join(b.dir, "keys", "min_signing_version"))
	if err != nil {
		return 0
	}
	v, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	return v
}

// DestroyBelow deletes the key files of every version below v.
func (b *Backend) DestroyBelow(ctx context.Context, v int) error {
	lock, err := fsutil.LockFile(filepath.Join(b.dir, "lock"))
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	defer lock.Unlock()
	vs, err := b.versions()
	if err != nil {
		return err
	}
	for _, old := range vs {
		if old >= v {
			break
		}
		if err := os.Remove(b.keyPath(old)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("local: destroy key %d: %w", old, err)
		}
		b.mu.Lock()
		delete(b.cache, old)
		b.mu.Unlock()
	}
	return fsutil.SyncDir(filepath.Join(b.dir, "keys"))
}
