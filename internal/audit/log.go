package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/openedx-keyd/keyd/internal/clock"
)

// maxAttempts bounds how often Record retries after losing a race for a seq.
// Every lost race means another writer extended the chain, so the bound is
// only reached when a store keeps refusing without progress.
const maxAttempts = 1000

// Log is the chain: it fills in seq, time, prev_hash and hash, deduplicates
// events on their Key (see KeyOf) and extends the one chain in its Store,
// also when other Logs (other replicas) append to the same store at the
// same time: every replica can report a transition it observes and the
// chain holds it once.
type Log struct {
	store Store
	clock clock.Clock

	mu   sync.Mutex
	tail Event // last event read or written; Seq 0 when the chain is empty
	seen map[Key]Event
}

// NewLog returns a Log over store. clk is the clock for event times (nil
// means clock.Real).
func NewLog(store Store, clk clock.Clock) *Log {
	return &Log{store: store, clock: cmp.Or[clock.Clock](clk, clock.Real{}), seen: make(map[Key]Event)}
}

// Record appends e to the chain and returns the stored event once it is
// durable. Seq, Time, PrevHash and Hash of e are ignored and filled in. When
// the chain already holds a duplicate of e, Record returns that event and
// appends nothing. An error means the event may not be stored: the caller
// must not report its operation done.
func (l *Log) Record(ctx context.Context, e Event) (Event, error) {
	if !e.Type.valid() {
		return Event{}, fmt.Errorf("audit: unknown event type %q", e.Type)
	}
	if e.Version < 0 {
		return Event{}, fmt.Errorf("audit: negative version %d", e.Version)
	}
	e.KID = strings.ToValidUTF8(e.KID, "\uFFFD")
	e.Actor = strings.ToValidUTF8(e.Actor, "\uFFFD")
	e.Reason = strings.ToValidUTF8(e.Reason, "\uFFFD")

	l.mu.Lock()
	defer l.mu.Unlock()
	for attempt := 1; ; attempt++ {
		if err := l.catchUp(ctx); err != nil {
			return Event{}, err
		}
		if old, ok := l.seen[KeyOf(e.Type, e.Version, e.Reason)]; ok {
			return old, nil
		}
		ev := Event{
			Seq:      l.tail.Seq + 1,
			Time:     l.clock.Now().UTC().Format(TimeFormat),
			Type:     e.Type,
			KID:      e.KID,
			Version:  e.Version,
			Actor:    e.Actor,
			Reason:   e.Reason,
			PrevHash: ZeroHash,
		}
		if l.tail.Seq > 0 {
			ev.PrevHash = l.tail.Hash
		}
		h, err := Hash(ev)
		if err != nil {
			return Event{}, err
		}
		ev.Hash = h
		err = l.store.Append(ctx, ev)
		if err == nil {
			l.add(ev)
			return ev, nil
		}
		if !errors.Is(err, ErrSeqTaken) {
			return Event{}, fmt.Errorf("audit: record %s event: %w", e.Type, err)
		}
		if attempt == maxAttempts {
			return Event{}, fmt.Errorf("audit: record %s event: gave up after %d attempts: %w", e.Type, attempt, err)
		}
		if err := ctx.Err(); err != nil {
			return Event{}, fmt.Errorf("audit: record %s event: %w", e.Type, err)
		}
	}
}

// Problems returns what the store reports wrong with the stored chain beyond
// what Verify sees in the events (a FileStore: lines that are not events, a
// log that disagrees with the key store's head); nil for other stores.
func (l *Log) Problems() []string {
	if p, ok := l.store.(interface{ Problems() []string }); ok {
		return p.Problems()
	}
	return nil
}

// Events returns the stored events with seq greater than since, in order.
func (l *Log) Events(ctx context.Context, since int64) ([]Event, error) {
	return l.store.Read(ctx, since)
}

// catchUp reads what other writers appended since the tail.
func (l *Log) catchUp(ctx context.Context) error {
	evs, err := l.store.Read(ctx, l.tail.Seq)
	if err != nil {
		return fmt.Errorf("audit: read chain: %w", err)
	}
	for _, ev := range evs {
		l.add(ev)
	}
	return nil
}

func (l *Log) add(ev Event) {
	if ev.Seq <= l.tail.Seq {
		return
	}
	l.tail = ev
	k := KeyOf(ev.Type, ev.Version, ev.Reason)
	if _, ok := l.seen[k]; !ok {
		l.seen[k] = ev
	}
}
