// Package local is the embedded key backend: keyd generates the keys and
// keeps them in the data dir, one 0600 file per version, written atomically.
package local

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/go-jose/go-jose/v4"

	"github.com/openedx-keyd/keyd/internal/fsutil"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// Backend keeps keys under <dir>/keys. Several processes may share one data
// dir: creation and destruction are serialised by an flock on <dir>/lock.
//
// A key file that cannot be read as a key (corrupt, truncated, a stray
// directory or a file of another version) is moved to <dir>/quarantine and
// reported by Problems, so one bad file never hides the sound keys; its
// version number stays used (the high-water mark is raised first).
type Backend struct {
	dir string

	mu          sync.RWMutex
	cache       map[int]*entry    // immutable once loaded; dropped when the file goes
	quarantined map[string]string // quarantine file name -> why, this process
	readOnly    bool              // OpenReadOnly: bad files are skipped, not moved

	pinned atomic.Int64 // signatures below this version are refused
	// pinSeen is the pin file's modification time (Unix ns) when pinned
	// was last read from it: Sign re-reads the file when it changes.
	pinSeen atomic.Int64
}

// errCorrupt marks a key file whose content is not a key of its version:
// only such a file is set aside. A failed read is not, as the file may
// be sound.
var errCorrupt = errors.New("corrupt")

type entry struct {
	rec  signer.Record
	priv crypto.Signer
}

// file is the on-disk form of one version.
type file struct {
	Record     signer.Record   `json:"record"`
	PrivateJWK jose.JSONWebKey `json:"private_jwk"`
}

// New opens (creating if needed) the key store in dir.
func New(dir string) (*Backend, error) {
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		return nil, fmt.Errorf("local: create key dir: %w", err)
	}
	b := &Backend{dir: dir, cache: map[int]*entry{}, quarantined: map[string]string{}}
	b.pinned.Store(int64(b.minSigning()))
	return b, nil
}

// OpenReadOnly opens the key store in dir for reading only (keyd audit
// verify): nothing is created or moved; a bad key file is skipped and
// reported by Problems.
func OpenReadOnly(dir string) (*Backend, error) {
	fi, err := os.Stat(filepath.Join(dir, "keys"))
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("local: %s is not a directory", filepath.Join(dir, "keys"))
	}
	b := &Backend{dir: dir, cache: map[int]*entry{}, quarantined: map[string]string{}, readOnly: true}
	return b, nil
}

// Name is "local".
func (b *Backend) Name() string { return "local" }

func (b *Backend) keyPath(v int) string {
	return filepath.Join(b.dir, "keys", fmt.Sprintf("%08d.json", v))
}

// versions lists the version numbers present on disk, ascending.
func (b *Backend) versions() ([]int, error) {
	ents, err := os.ReadDir(filepath.Join(b.dir, "keys"))
	if err != nil {
		return nil, fmt.Errorf("local: list keys: %w", err)
	}
	var vs []int
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		v, err := strconv.Atoi(strings.TrimSuffix(name, ".json"))
		if err != nil || v <= 0 || name != filepath.Base(b.keyPath(v)) {
			continue // not a key file name (e.g. "5.json" would alias 00000005.json)
		}
		vs = append(vs, v)
	}
	sort.Ints(vs)
	return vs, nil
}

func (b *Backend) load(v int) (*entry, error) {
	b.mu.RLock()
	e := b.cache[v]
	b.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	raw, err := os.ReadFile(b.keyPath(v))
	if errors.Is(err, os.ErrNotExist) {
		return nil, signer.ErrNoKey
	}
	if errors.Is(err, syscall.EISDIR) {
		return nil, fmt.Errorf("local: key file %s is %w: a directory", b.keyPath(v), errCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("local: read key %d: %w", v, err)
	}
	var f file
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("local: key file %s is %w: %w", b.keyPath(v), errCorrupt, err)
	}
	priv, ok := f.PrivateJWK.Key.(crypto.Signer)
	if !ok || f.Record.Version != v {
		return nil, fmt.Errorf("local: key file %s is %w: no private key for version %d", b.keyPath(v), errCorrupt, v)
	}
	if !fits(f.Record.Algorithm, priv) {
		return nil, fmt.Errorf("local: key file %s is %w: a %T cannot sign %q", b.keyPath(v), errCorrupt, priv, f.Record.Algorithm)
	}
	e = &entry{rec: f.Record, priv: priv}
	b.mu.Lock()
	b.cache[v] = e
	b.mu.Unlock()
	return e, nil
}

// Keys lists every version still on disk, oldest first.
func (b *Backend) Keys(ctx context.Context) ([]signer.Key, error) {
	vs, err := b.versions()
	if err != nil {
		return nil, err
	}
	if p := int64(b.minSigning()); p > b.pinned.Load() {
		b.pinned.Store(p) // raised by another process on this data dir
	}
	keys := make([]signer.Key, 0, len(vs))
	for _, v := range vs {
		e, err := b.load(v)
		if errors.Is(err, signer.ErrNoKey) {
			continue // destroyed by another process meanwhile
		}
		if errors.Is(err, errCorrupt) {
			// One bad file must not hide the sound keys: set it aside.
			if qerr := b.quarantineKey(v, err); qerr != nil {
				return nil, fmt.Errorf("%w (and it cannot be set aside: %w)", err, qerr)
			}
			continue
		}
		if err != nil {
			return nil, err // a failed read (I/O, permission): the file may be sound
		}
		keys = append(keys, signer.Key{Record: e.rec, Public: e.priv.Public(), HasRecord: true})
	}
	return keys, nil
}

// Create generates version rec.Version, which must follow the newest on disk.
func (b *Backend) Create(ctx context.Context, rec signer.Record) (signer.Key, error) {
	priv, err := generate(rec.Algorithm)
	if err != nil {
		return signer.Key{}, err
	}
	lock, err := fsutil.LockFile(filepath.Join(b.dir, "lock"))
	if err != nil {
		return signer.Key{}, fmt.Errorf("local: %w", err)
	}
	defer lock.Unlock()
	vs, err := b.versions()
	if err != nil {
		return signer.Key{}, err
	}
	newest := 0
	if len(vs) > 0 {
		newest = vs[len(vs)-1]
	}
	// A version number is never reused, even after its file is destroyed.
	onDisk := newest
	if hw := b.highWater(); hw > newest {
		newest = hw
	}
	if rec.Version == onDisk+1 && rec.Version <= newest {
		// The newest versions ever made are not on disk (set aside in the
		// quarantine, the quarantined file since removed, or lost to a
		// restore): the caller cannot see them, and a number is never
		// reused, so the new key takes the next unused number.
		rec.Version = newest + 1
	}
	if rec.Version != newest+1 {
		return signer.Key{}, signer.ErrAlreadyRotated
	}
	jwk := jose.JSONWebKey{Key: priv, Algorithm: string(rec.Algorithm), Use: "sig"}
	raw, err := json.Marshal(file{Record: rec, PrivateJWK: jwk})
	if err != nil {
		return signer.Key{}, fmt.Errorf("local: encode key: %w", err)
	}
	if err := fsutil.WriteFileAtomic(b.keyPath(rec.Version), raw, 0o600); err != nil {
		return signer.Key{}, fmt.Errorf("local: write key: %w", err)
	}
	if err := fsutil.WriteFileAtomic(b.highWaterPath(), []byte(strconv.Itoa(rec.Version)), 0o600); err != nil {
		return signer.Key{}, fmt.Errorf("local: write version counter: %w", err)
	}
	b.mu.Lock()
	b.cache[rec.Version] = &entry{rec: rec, priv: priv}
	b.mu.Unlock()
	return signer.Key{Record: rec, Public: priv.Public(), HasRecord: true}, nil
}
