// Package local is the embedded key backend: keyd generates the keys and
// keeps them in the data dir, one 0600 file per version, written atomically.
package local

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

// Sign signs input with version v. The credential was checked by the API.
func (b *Backend) Sign(ctx context.Context, _ signer.Credential, v int, alg signer.Algorithm, input []byte) ([]byte, error) {
	b.followPin()
	if int64(v) < b.pinned.Load() {
		return nil, fmt.Errorf("local: version %d no longer signs (pinned to %d or newer): %w", v, b.pinned.Load(), signer.ErrNoKey)
	}
	e, err := b.load(v)
	if err != nil {
		return nil, err
	}
	if e.rec.Algorithm != alg {
		return nil, fmt.Errorf("local: key %d is %s, not %s", v, e.rec.Algorithm, alg)
	}
	return signWith(e.priv, alg, input)
}

// fits reports whether priv is the kind of key alg signs with, so that a
// key file whose record and key disagree is refused instead of panicking.
func fits(alg signer.Algorithm, priv crypto.Signer) bool {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return alg == signer.RS512 || alg == signer.RS256
	case *ecdsa.PrivateKey:
		return alg == signer.ES256 && k.Curve == elliptic.P256()
	case ed25519.PrivateKey:
		return alg == signer.EdDSA
	}
	return false
}

func signWith(priv crypto.Signer, alg signer.Algorithm, input []byte) ([]byte, error) {
	switch alg {
	case signer.RS512:
		h := sha512.Sum512(input)
		return rsa.SignPKCS1v15(nil, priv.(*rsa.PrivateKey), crypto.SHA512, h[:])
	case signer.RS256:
		h := sha256.Sum256(input)
		return rsa.SignPKCS1v15(nil, priv.(*rsa.PrivateKey), crypto.SHA256, h[:])
	case signer.ES256:
		h := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, priv.(*ecdsa.PrivateKey), h[:])
		if err != nil {
			return nil, err
		}
		return rsConcat(r, s, 32), nil
	case signer.EdDSA:
		return ed25519.Sign(priv.(ed25519.PrivateKey), input), nil
	}
	return nil, fmt.Errorf("local: unsupported algorithm %q", alg)
}

// rsConcat is the JWS form of an ECDSA signature: R and S, each left-padded.
func rsConcat(r, s *big.Int, size int) []byte {
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out
}

func generate(alg signer.Algorithm) (crypto.Signer, error) {
	switch alg {
	case signer.RS512, signer.RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	case signer.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case signer.EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("local: unsupported algorithm %q", alg)
}

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

// ClearIntent removes the intent file.
func (b *Backend) ClearIntent(ctx context.Context) error {
	if err := os.Remove(b.intentPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("local: remove intent: %w", err)
	}
	return fsutil.SyncDir(b.dir)
}
