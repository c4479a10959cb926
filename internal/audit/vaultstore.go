package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/hashicorp/vault/api"
)

// seqDigits is the width of the zero-padded seq in a KV entry's name, so that
// names sort in seq order.
const seqDigits = 12

// maxSeq is the largest seq that fits in seqDigits digits.
const maxSeq = 999_999_999_999

// VaultStore is the Vault-mode store: one KV v2 entry per event at
// <mount>/data/audit/<seq, 12 digits zero-padded>, written create-only
// (check-and-set 0), so concurrent replicas extend one chain. The token needs
// create and read on <mount>/data/audit/* and list on <mount>/metadata/audit;
// it needs neither update nor delete, and should not have them.
//
// Entries are immutable once written, so the store caches every entry it has
// read and fetches only new ones.
type VaultStore struct {
	client *api.Client
	mount  string

	mu    sync.Mutex
	cache map[int64]Event
}

var _ Store = (*VaultStore)(nil)

// NewVaultStore returns the store in the KV v2 engine mounted at mount,
// accessed with client's token.
func NewVaultStore(client *api.Client, mount string) *VaultStore {
	return &VaultStore{client: client, mount: mount, cache: make(map[int64]Event)}
}

func (s *VaultStore) dataPath(seq int64) string {
	return fmt.Sprintf("%s/data/audit/%0*d", s.mount, seqDigits, seq)
}

// Append creates the entry for ev.Seq. When Vault refuses the write and the
// entry exists (check-and-set failed, or the policy forbids the update that a
// write to an existing entry would be), it returns ErrSeqTaken.
func (s *VaultStore) Append(ctx context.Context, ev Event) error {
	if ev.Seq < 1 || ev.Seq > maxSeq {
		return fmt.Errorf("audit: seq %d out of range", ev.Seq)
	}
	data, err := eventData(ev)
	if err != nil {
		return err
	}
	path := s.dataPath(ev.Seq)
	_, err = s.client.Logical().WriteWithContext(ctx, path, map[string]any{
		"options": map[string]any{"cas": 0},
		"data":    data,
	})
	if err != nil {
		if taken, rerr := s.exists(ctx, ev.Seq); rerr == nil && taken {
			return ErrSeqTaken
		}
		return fmt.Errorf("audit: write %s: %w", path, err)
	}
	s.mu.Lock()
	s.cache[ev.Seq] = ev
	s.mu.Unlock()
	return nil
}

// exists reports whether an entry (even a deleted version of one) is at seq.
func (s *VaultStore) exists(ctx context.Context, seq int64) (bool, error) {
	sec, err := s.client.Logical().ReadWithContext(ctx, s.dataPath(seq))
	if err != nil {
		return false, err
	}
	return sec != nil, nil
}

// Read lists the chain's entries and returns the events with seq greater than
// since, in seq order, reading only those not cached yet. An entry whose
// current version was deleted is left out, so Verify reports it missing; an
// entry that is not an event, or whose name is not a seq, is ErrMalformed.
func (s *VaultStore) Read(ctx context.Context, since int64) ([]Event, error) {
	seqs, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
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
func (s *VaultStore) list(ctx context.Context) ([]int64, error) {
	path := s.mount + "/metadata/audit"
	sec, err := s.client.Logical().ListWithContext(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("audit: list %s: %w", path, err)
	}
	if sec == nil || sec.Data["keys"] == nil {
		return nil, nil
	}
	keys, ok := sec.Data["keys"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: list %s: unexpected answer", ErrMalformed, path)
	}
	seqs := make([]int64, 0, len(keys))
	for _, k := range keys {
		name, _ := k.(string)
		seq, err := strconv.ParseInt(name, 10, 64)
		if len(name) != seqDigits || err != nil || seq < 1 {
			return nil, fmt.Errorf("%w: %s/%v is not named by a %d-digit seq", ErrMalformed, path, k, seqDigits)
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// get reads the entry at seq; ok is false when its current version is deleted.
func (s *VaultStore) get(ctx context.Context, seq int64) (ev Event, ok bool, err error) {
	path := s.dataPath(seq)
	sec, err := s.client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return Event{}, false, fmt.Errorf("audit: read %s: %w", path, err)
	}
	if sec == nil || sec.Data["data"] == nil {
		return Event{}, false, nil
	}
	raw, err := json.Marshal(sec.Data["data"])
	if err != nil {
		return Event{}, false, fmt.Errorf("%w: %s: %v", ErrMalformed, path, err)
	}
	ev, err = decodeEvent(raw)
	if err != nil {
		return Event{}, false, fmt.Errorf("%w: %s: %v", ErrMalformed, path, err)
	}
	if ev.Seq != seq {
		return Event{}, false, fmt.Errorf("%w: %s holds seq %d", ErrMalformed, path, ev.Seq)
	}
	return ev, true, nil
}

// eventData is ev as the KV entry's data: the event's JSON members.
func eventData(ev Event) (map[string]any, error) {
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
