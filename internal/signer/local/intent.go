package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/openedx-keyd/keyd/internal/fsutil"
	"github.com/openedx-keyd/keyd/internal/signer"
)

func (b *Backend) intentPath() string { return filepath.Join(b.dir, "emergency-intent.json") }

// SaveIntent writes the emergency intent atomically.
func (b *Backend) SaveIntent(ctx context.Context, in signer.Intent) error {
	raw, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("local: encode intent: %w", err)
	}
	lock, err := fsutil.LockFile(filepath.Join(b.dir, "lock"))
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	defer lock.Unlock() // so that a corrupt intent set aside is never a new one
	if err := fsutil.WriteFileAtomic(b.intentPath(), raw, 0o600); err != nil {
		return fmt.Errorf("local: write intent: %w", err)
	}
	return nil
}

// LoadIntent returns the recorded intent, or nil. An intent file that cannot
// be read as one is set aside in the quarantine (see Problems) instead of
// stopping every tick; a new emergency writes a new one.
func (b *Backend) LoadIntent(ctx context.Context) (*signer.Intent, error) {
	raw, err := os.ReadFile(b.intentPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	in, err := readIntent(raw, err)
	if err == nil {
		return in, nil
	}
	lock, lerr := fsutil.LockFile(filepath.Join(b.dir, "lock"))
	if lerr != nil {
		return nil, fmt.Errorf("local: %w", lerr)
	}
	defer lock.Unlock()
	raw, rerr := os.ReadFile(b.intentPath()) // again: a new emergency may have replaced it
	if errors.Is(rerr, os.ErrNotExist) {
		return nil, nil
	}
	if in, rerr := readIntent(raw, rerr); rerr == nil {
		return in, nil
	}
	err = fmt.Errorf("local: intent file %s is corrupt: %w", b.intentPath(), err)
	if qerr := b.quarantine(b.intentPath(), err); qerr != nil {
		return nil, fmt.Errorf("%w (and it cannot be set aside: %w)", err, qerr)
	}
	return nil, nil
}

func readIntent(raw []byte, err error) (*signer.Intent, error) {
	if err != nil {
		return nil, err
	}
	var in signer.Intent
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, err
	}
	return &in, nil
}

// ClearIntent removes the intent file.
func (b *Backend) ClearIntent(ctx context.Context) error {
	if err := os.Remove(b.intentPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("local: remove intent: %w", err)
	}
	return fsutil.SyncDir(b.dir)
}
