package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openedx-keyd/keyd/internal/fsutil"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// PropagationStore keeps observed propagation in <dir>/propagation, shared
// by every process on the data dir: observations.json (merged under an
// flock, written atomically), confirmations/<version>/<client>.json and
// activations/<version>.json (each created once: linked into place, never
// rewritten).
//
// A file of the store that cannot be read as what its path says it is
// (corrupt, truncated, a directory where a file belongs or a file where a
// directory belongs, another version's record) is moved to the data dir's
// quarantine, where the key backend's Problems reports it, and counts as
// absent: one bad file never stops the lifecycle. Observations are
// recorded again by the next fetches; a confirmation or an activation set
// aside is decided again by the rules, as if it had never been written (a
// key whose activation cannot be read waits for its clients again, at most
// until its max wait; it never counts as active since its activates_at).
type PropagationStore struct{ dir string }

// NewPropagationStore opens (creating) the store under dataDir.
func NewPropagationStore(dataDir string) (*PropagationStore, error) {
	s := &PropagationStore{dir: filepath.Join(dataDir, "propagation")}
	for _, d := range []string{s.dir, filepath.Join(s.dir, "confirmations"), filepath.Join(s.dir, "activations")} {
		if err := s.ensureDir(d); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// badFile is a file of the store that cannot be read as what its path says
// it is: path is what to set aside (the file, or a file standing where a
// directory belongs).
type badFile struct {
	path string
	err  error
}

func (e *badFile) Error() string {
	return fmt.Sprintf("local: %s is %v: %v", e.path, errCorrupt, e.err)
}

func (e *badFile) Unwrap() []error { return []error{errCorrupt, e.err} }

// ensureDir creates directory d of the store; anything but a directory
// standing on its way (d itself or one of its parents in the store) is set
// aside first.
func (s *PropagationStore) ensureDir(d string) error {
	err := os.MkdirAll(d, 0o700)
	if err == nil {
		return nil
	}
	blocker := s.notDir(d)
	if blocker == "" {
		return fmt.Errorf("local: create %s: %w", d, err)
	}
	if qerr := s.setAside(blocker, fmt.Errorf("not a directory, where the store keeps one")); qerr != nil {
		return fmt.Errorf("local: create %s: %w (and %s cannot be set aside: %w)", d, err, blocker, qerr)
	}
	if err := os.MkdirAll(d, 0o700); err != nil {
		return fmt.Errorf("local: create %s: %w", d, err)
	}
	return nil
}

// notDir is the first of the store's dir and its descendants on the way to
// path (path excluded) that exists and is not a directory, or "".
func (s *PropagationStore) notDir(path string) string {
	rel, err := filepath.Rel(s.dir, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return ""
	}
	p := s.dir
	parts := strings.Split(rel, string(filepath.Separator))
	for i := 0; ; i++ {
		fi, err := os.Stat(p)
		if err != nil {
			return ""
		}
		if !fi.IsDir() {
			return p
		}
		if i >= len(parts) || parts[i] == "." {
			return ""
		}
		p = filepath.Join(p, parts[i])
	}
}

// quarantineName is the name path gets in the quarantine: "propagation."
// and its path in the store, dots for slashes (never a key file's name).
func (s *PropagationStore) quarantineName(path string) string {
	rel, err := filepath.Rel(filepath.Dir(s.dir), path)
	if err != nil {
		rel = filepath.Base(path)
	}
	return strings.ReplaceAll(rel, string(filepath.Separator), ".")
}

// setAside moves path to the data dir's quarantine and keeps why for the
// key backend's Problems. The caller holds the store's lock when other
// processes may race (not needed for a blocker of ensureDir: a file where
// a directory belongs is never written by keyd).
func (s *PropagationStore) setAside(path string, why error) error {
	q := filepath.Join(filepath.Dir(s.dir), "quarantine")
	name, err := setAsideAs(q, path, s.quarantineName(path))
	if err != nil || name == "" {
		return err
	}
	noteWhy(filepath.Join(q, name), why.Error())
	return nil
}

func (s *PropagationStore) lock() (*fsutil.Lock, error) {
	if err := s.ensureDir(s.dir); err != nil {
		return nil, err
	}
	l, err := fsutil.LockFile(filepath.Join(s.dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	return l, nil
}

// readFile reads path of the store: absent (nil, nil), its content, a
// *badFile when what stands there is not a file (a directory; a file where
// a parent directory belongs), or another error for a failed read.
func (s *PropagationStore) readFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		return raw, nil
	case errors.Is(err, syscall.EISDIR):
		return nil, &badFile{path: path, err: errors.New("a directory where the store keeps a file")}
	case errors.Is(err, syscall.ENOTDIR):
		if b := s.notDir(path); b != "" {
			return nil, &badFile{path: b, err: errors.New("a file where the store keeps a directory")}
		}
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	}
	return nil, fmt.Errorf("local: read %s: %w", path, err)
}

type observationsFile struct {
	Observations []signer.Observation `json:"observations"`
}

func (s *PropagationStore) obsPath() string { return filepath.Join(s.dir, "observations.json") }

func (s *PropagationStore) readObservations() ([]signer.Observation, error) {
	raw, err := s.readFile(s.obsPath())
	if err != nil || raw == nil {
		return nil, err
	}
	var f observationsFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, &badFile{path: s.obsPath(), err: err}
	}
	return f.Observations, nil
}

// readOrSetAside reads the observations; a bad file is moved to the data
// dir's quarantine (reported with the key files set aside) and counts as
// none: observations are re-recorded by the next fetches, and a file that
// cannot be merged must not stall the lifecycle or the recorder.
// The caller holds the store's lock.
func (s *PropagationStore) readOrSetAside() ([]signer.Observation, error) {
	obs, err := s.readObservations()
	var bad *badFile
	if !errors.As(err, &bad) {
		return obs, err
	}
	if serr := s.setAside(bad.path, bad.err); serr != nil {
		return nil, fmt.Errorf("%w (and it cannot be set aside: %w)", err, serr)
	}
	return nil, nil
}

// SaveObservations merges obs into the stored ones (per client and
// instance, the later fetch and the higher version win) and drops those
// that fetched last before forgetBefore.
func (s *PropagationStore) SaveObservations(_ context.Context, obs []signer.Observation, forgetBefore time.Time) error {
	lock, err := s.lock()
	if err != nil {
		return err
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
		func(v int) (signer.Activation, bool, error) {
			return readDecision(s, s.activationPath(v), func(a signer.Activation) error { return a.Check(v) })
		},
		func(v int, client string) (signer.Confirmation, bool, error) {
			return readDecision(s, s.confirmationPath(v, client), func(c signer.Confirmation) error { return c.Check(v, client) })
		})
	return out, err
}

// setAsideLocked is readOrSetAside under the store's lock.
func (s *PropagationStore) setAsideLocked() ([]signer.Observation, error) {
	lock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	return s.readOrSetAside()
}

// Confirm implements rotation.PropagationStore: created once.
func (s *PropagationStore) Confirm(_ context.Context, c signer.Confirmation) (signer.Confirmation, error) {
	return createOnce(s, s.confirmationPath(c.Version, c.Client), c, func(got signer.Confirmation) error { return got.Check(c.Version, c.Client) })
}

// Activate implements rotation.PropagationStore: created once.
func (s *PropagationStore) Activate(_ context.Context, a signer.Activation) (signer.Activation, error) {
	return createOnce(s, s.activationPath(a.Version), a, func(got signer.Activation) error { return got.Check(a.Version) })
}

func (s *PropagationStore) activationPath(v int) string {
	return filepath.Join(s.dir, "activations", strconv.Itoa(v)+".json")
}

func (s *PropagationStore) confirmationPath(v int, client string) string {
	return filepath.Join(s.dir, "confirmations", strconv.Itoa(v), signer.PathName(client)+".json")
}

// readJSON reads the decision at path: false when it does not exist, a
// *badFile when it cannot be read as one that check accepts.
func readJSON[T any](s *PropagationStore, path string, check func(T) error) (T, bool, error) {
	var v T
	raw, err := s.readFile(path)
	if err != nil || raw == nil {
		return v, false, err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, &badFile{path: path, err: err}
	}
	if err := check(v); err != nil {
		return v, false, &badFile{path: path, err: err}
	}
	return v, true, nil
}

// readDecision is readJSON that sets a bad file aside (under the store's
// lock, after reading it again there: another process may have set it
// aside and created a sound one meanwhile) and then reports it absent.
func readDecision[T any](s *PropagationStore, path string, check func(T) error) (T, bool, error) {
	v, ok, err := readJSON(s, path, check)
	if !errors.Is(err, errCorrupt) {
		return v, ok, err
	}
	lock, lerr := s.lock()
	if lerr != nil {
		return v, false, lerr
	}
	defer lock.Unlock()
	v, ok, err = readJSON(s, path, check)
	var bad *badFile
	if !errors.As(err, &bad) {
		return v, ok, err
	}
	if serr := s.setAside(bad.path, bad.err); serr != nil {
		return v, false, fmt.Errorf("%w (and it cannot be set aside: %w)", err, serr)
	}
	var zero T
	return zero, false, nil
}

// createOnce writes v to path unless it exists (a temp file linked into
// place: never torn, never overwritten) and returns what path holds. A bad
// file standing there is set aside first, so the decision is made again.
func createOnce[T any](s *PropagationStore, path string, v T, check func(T) error) (T, error) {
	var zero T
	raw, err := json.Marshal(v)
	if err != nil {
		return zero, err
	}
	if err := s.ensureDir(filepath.Dir(path)); err != nil {
		return zero, err
	}
	tmp := path + ".tmp-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := fsutil.WriteFileAtomic(tmp, raw, 0o600); err != nil {
		return zero, fmt.Errorf("local: %w", err)
	}
	defer os.Remove(tmp)
	for range 2 { // the second round after a bad file was set aside
		if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
			return zero, fmt.Errorf("local: create %s: %w", path, err)
		}
		if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
			return zero, fmt.Errorf("local: %w", err)
		}
		stored, ok, err := readDecision(s, path, check)
		if err != nil || ok {
			return stored, err
		}
	}
	return zero, fmt.Errorf("local: %s vanished after its creation", path)
}

// OpenPropagationReadOnly opens the propagation store under dataDir for
// reading only (keyd audit verify): nothing is created or moved.
func OpenPropagationReadOnly(dataDir string) *PropagationStore {
	return &PropagationStore{dir: filepath.Join(dataDir, "propagation")}
}

// Decisions returns every confirmation and activation the store holds,
// whatever its version, read only: a file that cannot be read as the
// decision its path names is skipped (keyd sets it aside and reports it).
// keyd audit verify checks each one has its event.
func (s *PropagationStore) Decisions(_ context.Context) (signer.Observed, error) {
	var out signer.Observed
	err := s.listActivations(&out)
	if err == nil {
		err = s.listConfirmations(&out)
	}
	return out, err
}

// listDir lists dir of the store: none when it is absent (or not a directory).
func listDir(dir string) ([]os.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return nil, fmt.Errorf("local: list %s: %w", dir, err)
	}
	return ents, nil
}

func (s *PropagationStore) listActivations(out *signer.Observed) error {
	ents, err := listDir(filepath.Join(s.dir, "activations"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		v, ok := versionFile(e.Name())
		if !ok {
			continue
		}
		a, ok, err := readJSON(s, s.activationPath(v), func(a signer.Activation) error { return a.Check(v) })
		if err != nil && !errors.Is(err, errCorrupt) {
			return err
		}
		if ok {
			if out.Activations == nil {
				out.Activations = map[int]signer.Activation{}
			}
			out.Activations[v] = a
		}
	}
	return nil
}

func (s *PropagationStore) listConfirmations(out *signer.Observed) error {
	dirs, err := listDir(filepath.Join(s.dir, "confirmations"))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		v, err := strconv.Atoi(d.Name())
		if err != nil || v <= 0 || strconv.Itoa(v) != d.Name() || !d.IsDir() {
			continue
		}
		if err := s.listVersionConfirmations(v, d.Name(), out); err != nil {
			return err
		}
	}
	return nil
}

// listVersionConfirmations adds the confirmations of version v, stored in
// confirmations/<dir>, to out.
func (s *PropagationStore) listVersionConfirmations(v int, dir string, out *signer.Observed) error {
	files, err := listDir(filepath.Join(s.dir, "confirmations", dir))
	if err != nil {
		return err
	}
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".json") || strings.Contains(f.Name(), ".tmp-") {
			continue
		}
		path := filepath.Join(s.dir, "confirmations", dir, f.Name())
		c, ok, err := readJSON(s, path, func(c signer.Confirmation) error {
			if err := c.Check(v, c.Client); err != nil {
				return err
			}
			if s.confirmationPath(v, c.Client) != path {
				return fmt.Errorf("%w: a confirmation of %q stored under another name", signer.ErrMalformed, c.Client)
			}
			return nil
		})
		if err != nil && !errors.Is(err, errCorrupt) {
			return err
		}
		if ok {
			out.Confirmations = append(out.Confirmations, c)
		}
	}
	return nil
}

// versionFile is the version of an activation file's name ("<v>.json").
func versionFile(name string) (int, bool) {
	base, ok := strings.CutSuffix(name, ".json")
	v, err := strconv.Atoi(base)
	return v, ok && err == nil && v > 0 && strconv.Itoa(v) == base
}
