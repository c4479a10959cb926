package local

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/openedx-keyd/keyd/internal/fsutil"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// PropagationStore keeps observed propagation in <dir>/propagation, shared
// by every process on the data dir: observations.json (merged under an
// flock, written atomically), confirmations/<version>/<client>.json and
// activations/<version>.json (each created once: linked into place, never
// rewritten).
type PropagationStore struct{ dir string }

// NewPropagationStore opens (creating) the store under dataDir.
func NewPropagationStore(dataDir string) (*PropagationStore, error) {
	dir := filepath.Join(dataDir, "propagation")
	for _, d := range []string{dir, filepath.Join(dir, "confirmations"), filepath.Join(dir, "activations")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("local: create %s: %w", d, err)
		}
	}
	return &PropagationStore{dir: dir}, nil
}

type observationsFile struct {
	Observations []signer.Observation `json:"observations"`
}

func (s *PropagationStore) obsPath() string { return filepath.Join(s.dir, "observations.json") }

func (s *PropagationStore) readObservations() ([]signer.Observation, error) {
	raw, err := os.ReadFile(s.obsPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("local: read observations: %w", err)
	}
	var f observationsFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("local: %s is %w: %w", s.obsPath(), errCorrupt, err)
	}
	return f.Observations, nil
}

// readOrSetAside reads the observations; a corrupt file is moved to the
// data dir's quarantine (reported with the key files set aside) and counts
// as none: observations are re-recorded by the next fetches, and a file
// that cannot be merged must not stall the lifecycle or the recorder.
// The caller holds the store's lock.
func (s *PropagationStore) readOrSetAside() ([]signer.Observation, error) {
	obs, err := s.readObservations()
	if !errors.Is(err, errCorrupt) {
		return obs, err
	}
	if _, serr := setAside(filepath.Join(filepath.Dir(s.dir), "quarantine"), s.obsPath()); serr != nil {
		return nil, fmt.Errorf("%w (and it cannot be set aside: %w)", err, serr)
	}
	return nil, nil
}

// SaveObservations merges obs into the stored ones (per client and
// instance, the later fetch and the higher version win) and drops those
// that fetched last before forgetBefore.
func (s *PropagationStore) SaveObservations(_ context.Context, obs []signer.Observation, forgetBefore time.Time) error {
	lock, err := fsutil.LockFile(filepath.Join(s.dir, "lock"))
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	defer lock.Unlock()
	if cur, err := s.readOrSetAside(); err == nil {
		obs = signer.MergeObservations(cur, obs, forgetBefore)
	} else {
		return err
	}
	raw, err := json.Marshal(observationsFile{Observations: obs})
	if err == nil {
		err = fsutil.WriteFileAtomic(s.obsPath(), raw, 0o600)
	}
	if err != nil {
		return fmt.Errorf("local: write observations: %w", err)
	}
	return nil
}

// Observed returns the observations of clients, and the confirmations and
// activations of versions (rotation.PropagationStore).
func (s *PropagationStore) Observed(_ context.Context, versions []int, clients []string) (signer.Observed, error) {
	var out signer.Observed
	all, err := s.readObservations()
	if errors.Is(err, errCorrupt) {
		all, err = s.setAsideLocked()
	}
	if err != nil {
		return out, err
	}
	for _, o := range all {
		if slices.Contains(clients, o.Client) {
			out.Observations = append(out.Observations, o)
		}
	}
	err = signer.ReadDecisions(&out, versions, clients,
		func(v int) (a signer.Activation, ok bool, err error) {
			ok, err = readJSON(s.activationPath(v), &a)
			return a, ok, err
		},
		func(v int, client string) (c signer.Confirmation, ok bool, err error) {
			ok, err = readJSON(s.confirmationPath(v, client), &c)
			return c, ok, err
		})
	return out, err
}

// setAsideLocked is readOrSetAside under the store's lock.
func (s *PropagationStore) setAsideLocked() ([]signer.Observation, error) {
	lock, err := fsutil.LockFile(filepath.Join(s.dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	defer lock.Unlock()
	return s.readOrSetAside()
}

// Confirm implements rotation.PropagationStore: created once.
func (s *PropagationStore) Confirm(_ context.Context, c signer.Confirmation) (signer.Confirmation, error) {
	p := s.confirmationPath(c.Version, c.Client)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return c, fmt.Errorf("local: %w", err)
	}
	var stored signer.Confirmation
	err := createOnce(p, c, &stored)
	return stored, err
}

// Activate implements rotation.PropagationStore: created once.
func (s *PropagationStore) Activate(_ context.Context, a signer.Activation) (signer.Activation, error) {
	var stored signer.Activation
	err := createOnce(s.activationPath(a.Version), a, &stored)
	return stored, err
}

func (s *PropagationStore) activationPath(v int) string {
	return filepath.Join(s.dir, "activations", strconv.Itoa(v)+".json")
}

func (s *PropagationStore) confirmationPath(v int, client string) string {
	return filepath.Join(s.dir, "confirmations", strconv.Itoa(v), signer.PathName(client)+".json")
}

// createOnce writes v to path unless it exists (a temp file linked into
// place: never torn, never overwritten), then reads back what path holds
// into stored.
func createOnce(path string, v, stored any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := fsutil.WriteFileAtomic(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("local: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("local: create %s: %w", path, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("local: %w", err)
	}
	if ok, err := readJSON(path, stored); err != nil || !ok {
		return cmp.Or(err, fmt.Errorf("local: %s vanished after its creation", path))
	}
	return nil
}

// readJSON reads path into v; false when it does not exist.
func readJSON(path string, v any) (bool, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("local: read %s: %w", path, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("local: %s is corrupt: %w", path, err)
	}
	return true, nil
}
