// Package audit keeps keyd's tamper-evident trail of key events: a hash chain
// of JSON events, one chain shared by every replica, stored in a local file or
// in Vault's KV v2, with the checks that name the first bad record.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Type is the kind of key event.
type Type string

// The event types. Each lifecycle transition is one event.
const (
	Bootstrap      Type = "bootstrap"
	Created        Type = "created"
	Activated      Type = "activated"
	Retired        Type = "retired"
	Destroyed      Type = "destroyed"
	Emergency      Type = "emergency"
	RotationFailed Type = "rotation_failed"
	// TornRecord is written by the file store when it finds the last line
	// of the log torn by a crash; Reason names the side file holding it.
	TornRecord Type = "torn_record"
	// PropagationConfirmed: a client holds a key version (observed
	// propagation); Reason names the client and fetch or admin.
	PropagationConfirmed Type = "propagation_confirmed"
	// ActivationUnconfirmed: a gated key activated at its max wait;
	// Reason names the clients not confirmed.
	ActivationUnconfirmed Type = "activation_unconfirmed"
)

// Types lists every event type.
var Types = []Type{Bootstrap, Created, Activated, Retired, Destroyed, Emergency, RotationFailed, TornRecord,
	PropagationConfirmed, ActivationUnconfirmed}

func (t Type) valid() bool { return slices.Contains(Types, t) }

// Key identifies an event for deduplication: the one rule by which the
// chain (Log), the lifecycle's outbox (rotation) and the check of stored
// decisions (ReconcileDecisions) tell two events of a transition apart.
// Make it with KeyOf.
type Key struct {
	Type    Type
	Version int
	Reason  string // empty unless the type is keyed by its reason
}

// KeyOf is the key of an event of type t for version with reason. A
// transition happens once per version, so its key is (type, version), and
// every replica that observes it reports the same event. Three types are
// keyed by their reason too: rotation_failed (each distinct failure is
// recorded once per attempted version; repeats of the same one are not,
// their count belongs in metrics), torn_record (one per side file) and
// propagation_confirmed (one per client, named in the reason, and version).
func KeyOf(t Type, version int, reason string) Key {
	k := Key{Type: t, Version: version}
	if t == RotationFailed || t == TornRecord || t == PropagationConfirmed {
		k.Reason = reason
	}
	return k
}

// ZeroHash is the prev_hash of the first event.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// TimeFormat is the layout of Event.Time: RFC 3339, UTC, whole seconds.
const TimeFormat = "2006-01-02T15:04:05Z"

// Event is one record of the chain. Hash is the lowercase hex SHA-256 of the
// RFC 8785 canonical JSON of the event without its hash member, and PrevHash
// is the previous event's Hash (ZeroHash for seq 1).
type Event struct {
	Seq      int64  `json:"seq"`
	Time     string `json:"time"` // TimeFormat, kept as text so the hash is stable
	Type     Type   `json:"type"`
	KID      string `json:"kid"`
	Version  int    `json:"version"`
	Actor    string `json:"actor"`
	Reason   string `json:"reason"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// Store holds the chain's entries. Implementations: FileStore (local mode)
// and Vault's KV v2 (vault.NewAuditStore). Every method is safe for
// concurrent use, also by several processes sharing the store.
type Store interface {
	// Append writes ev at ev.Seq, create-only, and returns once it is
	// durable. It returns ErrSeqTaken when an entry with that seq exists.
	Append(ctx context.Context, ev Event) error
	// Read returns the events with seq greater than since, in order.
	Read(ctx context.Context, since int64) ([]Event, error)
}

// Errors callers branch on.
var (
	// ErrSeqTaken means another writer already stored an entry at that seq.
	ErrSeqTaken = errors.New("audit: seq already taken")
	// ErrMalformed means a stored entry cannot be read as an event.
	ErrMalformed = errors.New("audit: malformed entry")
	// ErrHeadMismatch means the log does not hold the newest event the key
	// store recorded: it was deleted, replaced or cut off.
	ErrHeadMismatch = errors.New("audit: the log does not match the head recorded beside the keys")
)

// Hash returns the hash e should carry: the lowercase hex SHA-256 of the
// RFC 8785 canonical JSON of e without its hash member.
func Hash(e Event) (string, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("audit: encode event: %w", err)
	}
	return contentHash(raw)
}

// contentHash hashes the JSON object raw as stored, without its hash member:
// what any independent verifier computes.
func contentHash(raw []byte) (string, error) {
	canon, err := canonicalJSON(raw, "hash")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}

// encodeLine returns ev as one line of JSON, newline included, with the
// members in their declared order and no HTML escaping.
func encodeLine(ev Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, fmt.Errorf("audit: encode event: %w", err)
	}
	return buf.Bytes(), nil
}

// decodeEvent reads one stored entry strictly: it must be a JSON object with
// exactly the members of an Event, each of the right type, and well-formed
// field values. Whether its hash matches is for Verify to say.
func decodeEvent(raw []byte) (Event, error) {
	canon, err := canonicalJSON(raw, "")
	if err != nil {
		return Event{}, fmt.Errorf("not valid JSON: %w", err)
	}
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return Event{}, fmt.Errorf("not an event: %w", err)
	}
	again, err := json.Marshal(ev)
	if err != nil {
		return Event{}, fmt.Errorf("not an event: %w", err)
	}
	if canon2, err := canonicalJSON(again, ""); err != nil || !bytes.Equal(canon, canon2) {
		return Event{}, errors.New("not an event: members missing, null or duplicated")
	}
	if msg := checkFields(ev); msg != "" {
		return Event{}, errors.New(msg)
	}
	return ev, nil
}

// checkFields returns what is wrong with the values of ev's fields, or "".
func checkFields(ev Event) string {
	switch {
	case ev.Seq < 1:
		return fmt.Sprintf("seq %d is not positive", ev.Seq)
	case !ev.Type.valid():
		return fmt.Sprintf("unknown type %q", ev.Type)
	case ev.Version < 0:
		return fmt.Sprintf("version %d is negative", ev.Version)
	case !isHash(ev.Hash):
		return "hash is not 64 lowercase hex digits"
	case !isHash(ev.PrevHash):
		return "prev_hash is not 64 lowercase hex digits"
	}
	if _, err := time.Parse(TimeFormat, ev.Time); err != nil {
		return fmt.Sprintf("time %q is not RFC 3339 UTC", ev.Time)
	}
	return ""
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}
