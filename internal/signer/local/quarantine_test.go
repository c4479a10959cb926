package local

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// TestBadKeyFileIsSetAside: a corrupt pending key, a stray directory and a
// file of another version in keys/ are moved to the quarantine; the sound
// keys keep being listed and signing, and no version number is reused.
func TestBadKeyFileIsSetAside(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := newBackend(t, dir)
	k1 := mustCreate(t, b, 1, signer.ES256)
	mustCreate(t, b, 2, signer.ES256)
	mustCreate(t, b, 3, signer.ES256)
	other, _ := os.ReadFile(b.keyPath(1))
	// Fault injection: v3 (the pending key) torn, a stray directory, a copy
	// of v1 named as v9, and an alias name that must not count as a version.
	if err := os.WriteFile(b.keyPath(3), []byte(`{"record":{"vers`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(b.keyPath(7), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.keyPath(9), other, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "2.json"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	fresh := newBackend(t, dir) // nothing cached
	if got, want := versions(t, fresh), []int{1, 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("versions = %v, want %v", got, want)
	}
	for _, v := range []int{3, 7, 9} {
		if _, err := os.Lstat(fresh.keyPath(v)); !os.IsNotExist(err) {
			t.Errorf("%s still in keys/ (%v), want it in the quarantine", fresh.keyPath(v), err)
		}
	}
	if got := fresh.QuarantinedVersions(); !reflect.DeepEqual(got, []int{3, 7, 9}) {
		t.Errorf("QuarantinedVersions = %v, want [3 7 9]", got)
	}
	problems := strings.Join(fresh.Problems(), "\n")
	for _, want := range []string{"00000003.json", "00000007.json", "00000009.json", "corrupt", "quarantine"} {
		if !strings.Contains(problems, want) {
			t.Errorf("Problems do not mention %q:\n%s", want, problems)
		}
	}
	if _, err := signJWS(t, fresh, k1, "still signs"); err != nil {
		t.Errorf("sign with the sound v1: %v", err)
	}
	// The rotation code asks for the version after the newest it sees (3):
	// it gets one above every number ever used.
	k, err := fresh.Create(ctx, record(3, signer.ES256))
	if err != nil {
		t.Fatalf("Create after the quarantine: %v", err)
	}
	if k.Version != 10 {
		t.Errorf("new key is version %d, want 10 (3, 7 and 9 are never reused)", k.Version)
	}
	if _, err := fresh.Create(ctx, record(3, signer.ES256)); err == nil {
		t.Error("a second Create(3) succeeded; want ErrAlreadyRotated")
	}
	if got, want := versions(t, newBackend(t, dir)), []int{1, 2, 10}; !reflect.DeepEqual(got, want) {
		t.Errorf("versions after restart = %v, want %v", got, want)
	}
}

// TestQuarantineRaisesTheHighWaterMark: a corrupt newest key whose number
// the counter does not hold yet (a crash before the counter was written)
// still never has its number reused.
func TestQuarantineRaisesTheHighWaterMark(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	mustCreate(t, b, 1, signer.EdDSA)
	if err := os.WriteFile(b.keyPath(2), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	versions(t, b)
	k, err := b.Create(context.Background(), record(2, signer.EdDSA))
	if err != nil || k.Version != 3 {
		t.Fatalf("Create = v%d, %v; want v3", k.Version, err)
	}
}

// TestReadOnlyMovesNothing: keyd audit verify reads a data dir without
// changing it: a bad file is skipped and reported, left in place.
func TestReadOnlyMovesNothing(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	mustCreate(t, b, 1, signer.EdDSA)
	if err := os.WriteFile(b.keyPath(2), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(t, ro); !reflect.DeepEqual(got, []int{1}) {
		t.Errorf("versions = %v, want [1]", got)
	}
	if _, err := os.Stat(b.keyPath(2)); err != nil {
		t.Errorf("the bad file was moved by a read-only store: %v", err)
	}
	if _, err := os.Stat(ro.quarantineDir()); !os.IsNotExist(err) {
		t.Errorf("a read-only store created the quarantine: %v", err)
	}
	if p := strings.Join(ro.Problems(), "\n"); !strings.Contains(p, "00000002.json skipped") {
		t.Errorf("Problems = %q", p)
	}
	if got := ro.QuarantinedVersions(); !reflect.DeepEqual(got, []int{2}) {
		t.Errorf("QuarantinedVersions = %v, want [2]", got)
	}
	if _, err := OpenReadOnly(filepath.Join(dir, "nowhere")); err == nil {
		t.Error("OpenReadOnly of a dir without keys/ succeeded")
	}
}

// TestUnreadableKeyFileIsNotSetAside: a key file that cannot be read for a
// reason other than its content (an I/O error, a permission after a
// restore, too many open files) is a failed read, not a bad file: moving it
// to the quarantine would unpublish a key still needed (tokens it signed
// stop verifying; with every key set aside, a fresh bootstrap key). Keys
// fails instead, and the file stays where it is.
func TestUnreadableKeyFileIsNotSetAside(t *testing.T) {
	if _, err := os.ReadFile("/proc/self/mem"); err == nil {
		t.Skip("no file that fails to read with an I/O error here")
	}
	dir := t.TempDir()
	b := newBackend(t, dir)
	mustCreate(t, b, 1, signer.ES256)
	mustCreate(t, b, 2, signer.ES256)
	// Fault injection: reading v2 fails with EIO.
	if err := os.Rename(b.keyPath(2), filepath.Join(dir, "v2.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/self/mem", b.keyPath(2)); err != nil {
		t.Fatal(err)
	}
	fresh := newBackend(t, dir) // nothing cached
	if keys, err := fresh.Keys(context.Background()); err == nil {
		t.Errorf("Keys = %d keys, no error; want the read failure", len(keys))
	}
	if _, err := os.Lstat(fresh.keyPath(2)); err != nil {
		t.Errorf("the unreadable v2 was moved: %v", err)
	}
	if q := fresh.QuarantinedVersions(); len(q) != 0 {
		t.Errorf("QuarantinedVersions = %v, want none", q)
	}
}

// TestRemovedFromTheQuarantineStaysAccountedFor (issue 20, item 3):
// operations.md says to examine a quarantined file and remove it; its
// version still never vanished unseen (the audit must not report it as
// deleted outside the lifecycle) and its number is never reused.
func TestRemovedFromTheQuarantineStaysAccountedFor(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	mustCreate(t, b, 1, signer.EdDSA)
	mustCreate(t, b, 2, signer.EdDSA)
	if err := os.WriteFile(b.keyPath(2), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := newBackend(t, dir)
	versions(t, fresh) // sets v2 aside
	q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "*"))
	if len(q) != 1 {
		t.Fatalf("quarantine holds %v, want v2's file", q)
	}
	if err := os.Remove(q[0]); err != nil {
		t.Fatal(err)
	}
	fresh = newBackend(t, dir)
	if got := fresh.QuarantinedVersions(); !reflect.DeepEqual(got, []int{2}) {
		t.Errorf("QuarantinedVersions after the removal = %v, want [2]", got)
	}
	if p := fresh.Problems(); len(p) != 0 {
		t.Errorf("Problems after the removal = %q, want none", p)
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := ro.QuarantinedVersions(); !reflect.DeepEqual(got, []int{2}) {
		t.Errorf("read-only QuarantinedVersions = %v, want [2]", got)
	}
	k, err := fresh.Create(context.Background(), record(2, signer.EdDSA))
	if err != nil || k.Version != 3 {
		t.Fatalf("Create(2) = v%d, %v; want v3", k.Version, err)
	}
}
