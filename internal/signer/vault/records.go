package vault

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Lifecycle records, rotation claims and the emergency intent: keyd's
// entries in the KV v2 mount (see paths.go).

// record returns the lifecycle record of version v, and whether it exists.
func (b *Backend) record(ctx context.Context, v int) (signer.Record, bool, error) {
	b.mu.Lock()
	rec, ok := b.records[v]
	b.mu.Unlock()
	if ok {
		return rec, true, nil
	}
	data, _, err := b.kvMount().entry(ctx, recordPath(v))
	if err != nil || data == nil {
		return signer.Record{}, false, err
	}
	if err := decode(data, &rec); err != nil {
		return signer.Record{}, false, fmt.Errorf("vault: decode record %d: %w", v, err)
	}
	if rec.Version != v {
		return signer.Record{}, false, fmt.Errorf("vault: record %s holds version %d", recordPath(v), rec.Version)
	}
	b.remember(rec)
	return rec, true, nil
}

func (b *Backend) remember(rec signer.Record) {
	b.mu.Lock()
	b.records[rec.Version] = rec
	b.mu.Unlock()
}

// WriteRecord stores the lifecycle record of a version Vault holds without
// one: the first key, made by keyd bootstrap, or a version whose record was
// lost to a crash between the transit rotate and the record write. The
// record is created once (check-and-set 0), so every replica then follows
// the same one; when another replica wrote it first, ErrAlreadyRotated.
func (b *Backend) WriteRecord(ctx context.Context, rec signer.Record) error {
	ki, err := b.readKey(ctx)
	if err != nil {
		return err
	}
	if _, ok := ki.Keys[strconv.Itoa(rec.Version)]; !ok {
		return fmt.Errorf("%w: version %d of %s", signer.ErrNoKey, rec.Version, b.keyPath())
	}
	if !fits(rec.Algorithm, ki.Type) {
		return fmt.Errorf("vault: algorithm %q cannot use key %s of type %s", rec.Algorithm, b.keyPath(), ki.Type)
	}
	return b.writeRecord(ctx, rec)
}

// writeRecord writes rec once (check-and-set 0).
func (b *Backend) writeRecord(ctx context.Context, rec signer.Record) error {
	data, err := encode(rec)
	if err != nil {
		return fmt.Errorf("vault: encode record: %w", err)
	}
	created, err := b.kvMount().create(ctx, recordPath(rec.Version), data)
	if err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("%w: record of version %d exists", signer.ErrAlreadyRotated, rec.Version)
	}
	b.remember(rec)
	return nil
}

// claimEntry is the content of a rotation claim.
type claimEntry struct {
	Holder string    `json:"holder"`
	At     time.Time `json:"at"`
}

// claim makes this replica the one that creates version v, or returns
// ErrAlreadyRotated when another replica holds a live claim on it.
func (b *Backend) claim(ctx context.Context, v int) error {
	mine, err := encode(claimEntry{Holder: b.holder, At: b.clock.Now().UTC()})
	if err != nil {
		return fmt.Errorf("vault: encode claim: %w", err)
	}
	created, err := b.kvMount().create(ctx, claimPath(v), mine)
	if err != nil || created {
		return err
	}
	data, kvVersion, err := b.kvMount().entry(ctx, claimPath(v))
	if err != nil {
		return err
	}
	var theirs claimEntry
	if err := decode(data, &theirs); err != nil {
		return fmt.Errorf("vault: decode claim %d: %w", v, err)
	}
	if age := b.clock.Now().Sub(theirs.At); age < claimTimeout {
		return fmt.Errorf("%w: version %d is being created by %s", signer.ErrAlreadyRotated, v, theirs.Holder)
	}
	// The holder is presumed dead. Take over with check-and-set, so that
	// one replica at most does; the caller re-checks the key under the claim.
	err = b.kvMount().send(ctx, claimPath(v), mine, kvVersion)
	if statusOf(err) == 400 { // check-and-set failed: another replica took it over first
		return fmt.Errorf("%w: lost the takeover of version %d's stale claim", signer.ErrAlreadyRotated, v)
	}
	if err != nil {
		return wrap("take over claim "+claimPath(v), err)
	}
	b.log.Warn("took over a stale rotation claim", "version", v, "holder", theirs.Holder, "claimed_at", theirs.At)
	return nil
}

// SaveIntent records an emergency in <kv>/data/intent/emergency.
func (b *Backend) SaveIntent(ctx context.Context, in signer.Intent) error {
	data, err := encode(in)
	if err != nil {
		return fmt.Errorf("vault: encode intent: %w", err)
	}
	return wrap("save intent", b.kvMount().send(ctx, intentPath, data, noCAS))
}

// LoadIntent returns the recorded emergency, or nil when there is none.
func (b *Backend) LoadIntent(ctx context.Context) (*signer.Intent, error) {
	data, _, err := b.kvMount().entry(ctx, intentPath)
	if err != nil || data == nil {
		return nil, err
	}
	var in signer.Intent
	if err := decode(data, &in); err != nil {
		return nil, fmt.Errorf("vault: decode intent: %w", err)
	}
	return &in, nil
}

// ClearIntent deletes the intent (a KV v2 soft delete of its latest version).
func (b *Backend) ClearIntent(ctx context.Context) error {
	return wrap("clear intent", b.kvMount().remove(ctx, intentPath))
}
