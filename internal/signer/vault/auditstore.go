package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/audit"
)

// maxSeq is the largest seq that fits in seqDigits digits.
const maxSeq = 999_999_999_999

// AuditStore is the Vault-mode audit store: one KV v2 entry per event at
// <mount>/data/audit/<seq, 12 digits zero-padded>, written create-only
// (check-and-set 0), so concurrent replicas extend one chain. The token needs
// create and read on <mount>/data/audit/* and list on <mount>/metadata/audit;
// it needs neither update nor delete, and should not have them.
//
// Entries are immutable once written, so the store caches every entry it has
// read and fetches only new ones.
type AuditStore struct {
	kv kvMount

	mu    sync.Mutex
	cache map[int64]audit.Event
}

var _ audit.Store = (*AuditStore)(nil)

// NewAuditStore returns the audit store in the KV v2 engine mounted at mount,
// accessed with client's token.
func NewAuditStore(client *api.Client, mount string) *AuditStore {
	return &AuditStore{kv: kvMount{client: client, mount: mount}, cache: make(map[int64]audit.Event)}
}

// Append creates the entry for ev.Seq. When Vault refuses the write and the
// entry exists (check-and-set failed, or the policy forbids the update that a
// write to an existing entry would be), it returns audit.ErrSeqTaken.
func (s *AuditStore) Append(ctx context.Context, ev audit.Event) error {
	if ev.Seq < 1 || ev.Seq > maxSeq {
		return fmt.Errorf("audit: seq %d out of range", ev.Seq)
	}
	data, err := eventData(ev)
	if err != nil {
		return err
	}
	p := auditPath(ev.Seq)
	if err := s.kv.write(ctx, p, data, 0); err != nil {
		// Even a deleted entry holds its seq: check-and-set 0 fails on it.
		if sec, rerr := s.kv.read(ctx, p); rerr == nil && sec != nil {
			return audit.ErrSeqTaken
		}
		return err
	}
	s.mu.Lock()
	s.cache[ev.Seq] = ev
	s.mu.Unlock()
	return nil
}

// Read lists the chain's entries and returns the events with seq greater than
// since, in seq order, reading only those not cached yet. An entry whose
// current version was deleted is left out, so Verify reports it missing; an
// entry that is not an event, or whose name is not a seq, is
// audit.ErrMalformed.
func (s *AuditStore) Read(ctx context.Context, since int64) ([]audit.Event, error) {
	seqs, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []audit.Event
	for _, seq := range seqs {
		if seq <= since {
			continue
		}
		ev, ok := s.cache[seq]
		if !ok {
			ev, ok, err = s.get(ctx, seq)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			s.cache[seq] = ev
		}
		out = append(out, ev)
	}
	return out, nil
}

// list returns the seqs of every entry under audit/, sorted.
func (s *AuditStore) list(ctx context.Context) ([]int64, error) {
	keys, err := s.kv.list(ctx, auditDir)
	if err != nil {
		return nil, err
	}
	seqs := make([]int64, 0, len(keys))
	for _, k := range keys {
		name, _ := k.(string)
		seq, err := strconv.ParseInt(name, 10, 64)
		if len(name) != seqDigits || err != nil || seq < 1 {
			return nil, fmt.Errorf("%w: %s/%v is not named by a %d-digit seq", audit.ErrMalformed, s.kv.metadataPath(auditDir), k, seqDigits)
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// get reads the entry at seq; ok is false when its current version is deleted.
func (s *AuditStore) get(ctx context.Context, seq int64) (ev audit.Event, ok bool, err error) {
	p := auditPath(seq)
	sec, err := s.kv.read(ctx, p)
	if err != nil {
		return audit.Event{}, false, err
	}
	path := s.kv.dataPath(p)
	if sec == nil || sec.Data["data"] == nil {
		return audit.Event{}, false, nil
	}
	raw, err := json.Marshal(sec.Data["data"])
	if err != nil {
		return audit.Event{}, false, fmt.Errorf("%w: %s: %v", audit.ErrMalformed, path, err)
	}
	ev, err = audit.DecodeEvent(raw)
	if err != nil {
		return audit.Event{}, false, fmt.Errorf("%w: %s: %v", audit.ErrMalformed, path, err)
	}
	if ev.Seq != seq {
		return audit.Event{}, false, fmt.Errorf("%w: %s holds seq %d", audit.ErrMalformed, path, ev.Seq)
	}
	return ev, true, nil
}

// eventData is ev as the KV entry's data: the event's JSON members, numbers
// kept as written.
func eventData(ev audit.Event) (map[string]any, error) {
	raw, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("audit: encode event: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil {
		return nil, fmt.Errorf("audit: encode event: %w", err)
	}
	return data, nil
}
