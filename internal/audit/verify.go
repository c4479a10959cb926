package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Problem is what is wrong with a record of the chain.
type Problem string

// The problems Verify names.
const (
	Edited    Problem = "edited"    // its content or link no longer matches its hash
	Deleted   Problem = "deleted"   // a record is missing
	Reordered Problem = "reordered" // records are out of seq order
	Inserted  Problem = "inserted"  // a record that does not belong to the chain
	Malformed Problem = "malformed" // not readable as an event
)

// ChainError names the first bad record of a chain and why.
type ChainError struct {
	// Seq is the record's seq; 0 when the entry is unreadable (see Line).
	Seq int64
	// Line is the 1-based position of the entry in the list or file.
	Line    int
	Problem Problem
	// Detail is the rest of the sentence, e.g. "hash does not match its content".
	Detail string
}

func (e *ChainError) Error() string {
	if e.Seq == 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Problem, e.Detail)
	}
	return fmt.Sprintf("record seq %d: %s: %s", e.Seq, e.Problem, e.Detail)
}

// KeyVersion is a key version the backend holds.
type KeyVersion struct {
	Version int
	KID     string
	// Quarantined: the backend set the version's unreadable file aside; it
	// did not vanish unseen, but nothing about it can be checked.
	Quarantined bool
}

// ReconcileError lists the key versions the backend holds that have no
// creation event in the chain (its tail was cut off, or never written), and
// those the chain saw created that the backend no longer holds although no
// destroyed event says so (deleted outside the lifecycle, or the event lost).
type ReconcileError struct {
	Missing  []KeyVersion
	Vanished []KeyVersion
}

func (e *ReconcileError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("%s held by the backend but %s no created, bootstrap or emergency event: the audit tail was cut off",
			versionNames(e.Missing), plural(e.Missing, "has", "have")))
	}
	if len(e.Vanished) > 0 {
		parts = append(parts, fmt.Sprintf("%s created in the audit but no longer held by the backend, without a destroyed event: deleted outside the lifecycle, or the event was lost",
			versionNames(e.Vanished)))
	}
	return strings.Join(parts, "; ")
}

// versionNames is "key version 3 (kid k) is" or "key versions 3, 4 are".
func versionNames(kvs []KeyVersion) string {
	names := make([]string, len(kvs))
	for i, kv := range kvs {
		names[i] = strconv.Itoa(kv.Version)
		if kv.KID != "" {
			names[i] += " (kid " + kv.KID + ")"
		}
	}
	if len(names) == 1 {
		return "key version " + names[0] + " is"
	}
	return "key versions " + strings.Join(names, ", ") + " are"
}

func plural(kvs []KeyVersion, one, many string) string {
	if len(kvs) == 1 {
		return one
	}
	return many
}

// entry is one record as Verify sees it: the event, the hash of its content
// as stored, and what made it unreadable, if anything.
type entry struct {
	ev   Event
	sum  string // hash of the content as stored, without the hash member
	line int    // 1-based position
	// fatal is set when the entry cannot be read as an event at all.
	fatal string
	// bad is set when the entry reads as an event but is not a well-formed one.
	bad string
}

// Verify checks the chain: seq continuity from 1, each prev_hash link and
// each hash. It returns nil or a *ChainError naming the first bad record.
// A chain whose tail was cut off still verifies; Reconcile catches that.
func Verify(events []Event) error { return verifyEntries(entriesOf(events)) }

// entriesOf is events as Verify checks them.
func entriesOf(events []Event) []entry {
	entries := make([]entry, len(events))
	for i, ev := range events {
		e := entry{ev: ev, line: i + 1, bad: checkFields(ev)}
		sum, err := Hash(ev)
		if err != nil {
			e.fatal = err.Error()
		}
		e.sum = sum
		entries[i] = e
	}
	return entries
}

// VerifyFile checks the local audit log at path offline: every line, the
// chain (as Verify) and, when versions is not nil, the reconciliation with
// the key versions the backend holds. It takes no lock and writes nothing.
func VerifyFile(path string, versions []KeyVersion) error {
	_, err := CheckFile(path, versions, nil)
	return err
}

// Summary is what a verification read: the number of records and the newest
// one's seq and hash (to pin elsewhere: a later check of a copy must reach
// that seq with that hash).
type Summary struct {
	Records  int
	HeadSeq  int64
	HeadHash string
}

// CheckFile is VerifyFile that also checks the chain against head (the seq
// and hash the key store recorded; nil: none) and says what it read. The
// summary is filled in as far as the file could be read. It is InspectFile's
// verdict.
func CheckFile(path string, versions []KeyVersion, head *Head) (Summary, error) {
	v, err := InspectFile(path, versions, head)
	if err != nil {
		return Summary{}, err
	}
	return v.Summary, v.Err()
}

// VerifyStore reads the whole chain from s and checks it as VerifyFile does.
// For the Vault chain, give it a store made with the auditor's own token.
// It is InspectStore's verdict.
func VerifyStore(ctx context.Context, s Store, versions []KeyVersion) error {
	v, err := InspectStore(ctx, s, versions)
	if err != nil {
		return err
	}
	return v.Err()
}

// parseLines reads the lines of a log file as entries, keeping what is
// wrong with each one instead of stopping at it.
func parseLines(data []byte) []entry {
	var entries []entry
	for n := 1; len(data) > 0; n++ {
		line, rest, found := bytes.Cut(data, []byte("\n"))
		data = rest
		e := entry{line: n}
		switch {
		case !found:
			e.fatal = "the last line is torn (no newline at its end); keyd moves it aside at its next start"
		case len(bytes.TrimSpace(line)) == 0:
			e.fatal = "empty line"
		default:
			e.ev, e.sum, e.fatal, e.bad = readEntry(line)
		}
		entries = append(entries, e)
	}
	return entries
}

// readEntry reads one stored entry leniently: the content hash comes from
// the bytes as stored, the chain fields from a plain decode; bad says why the
// entry is not a well-formed event.
func readEntry(raw []byte) (ev Event, sum, fatal, bad string) {
	sum, err := contentHash(raw)
	if err != nil {
		return ev, "", "not valid JSON: " + err.Error(), ""
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		return ev, sum, "not an event: " + err.Error(), ""
	}
	if _, err := decodeEvent(raw); err != nil {
		bad = err.Error()
	}
	return ev, sum, "", bad
}

// verifyEntries walks the chain while each record holds the next seq and
// links to the one before, and has classify name the first that does not.
func verifyEntries(es []entry) error {
	c := newChain(es)
	prevHash, want := ZeroHash, int64(1)
	for i, e := range es {
		if e.fatal != "" {
			return &ChainError{Line: e.line, Problem: Malformed, Detail: e.fatal}
		}
		if e.ev.Seq != want || e.ev.PrevHash != prevHash {
			return c.classify(i, want, prevHash)
		}
		if err := c.checkLinked(i); err != nil {
			return err
		}
		prevHash, want = e.ev.Hash, want+1
	}
	return nil
}

// chain is the entries under verification, indexed by the seq they claim.
type chain struct {
	es []entry
	at map[int64][]int // seq -> indexes of the readable entries claiming it
}

func newChain(es []entry) *chain {
	c := &chain{es: es, at: make(map[int64][]int)}
	for i, e := range es {
		if e.fatal == "" {
			c.at[e.ev.Seq] = append(c.at[e.ev.Seq], i)
		}
	}
	return c
}

// edited: entry i's content does not match its hash.
func (c *chain) edited(i int) bool { return c.es[i].sum != c.es[i].ev.Hash }

// next is the event after entry i, nil at the end or before an unreadable entry.
func (c *chain) next(i int) *Event {
	if i+1 < len(c.es) && c.es[i+1].fatal == "" {
		return &c.es[i+1].ev
	}
	return nil
}

// moved reports whether entry i is intact and links to the record that
// holds the seq before its own: a genuine record, perhaps out of place.
func (c *chain) moved(i int) bool {
	ev := c.es[i].ev
	if c.edited(i) {
		return false
	}
	if ev.Seq == 1 {
		return ev.PrevHash == ZeroHash
	}
	return slices.ContainsFunc(c.at[ev.Seq-1], func(j int) bool { return c.es[j].ev.Hash == ev.PrevHash })
}

func (c *chain) fail(i int, p Problem, format string, args ...any) error {
	return &ChainError{Seq: c.es[i].ev.Seq, Line: c.es[i].line, Problem: p, Detail: fmt.Sprintf(format, args...)}
}

// checkLinked checks entry i, which holds the next seq and links to the
// record before: it must be the only one to, intact and well-formed.
func (c *chain) checkLinked(i int) error {
	ev := c.es[i].ev
	if next := c.next(i); next != nil && next.Seq == ev.Seq && next.PrevHash == ev.PrevHash {
		return c.fail(extraOf(c.es, i), Inserted, "a second record claims this seq and links to the same predecessor")
	}
	if c.edited(i) {
		return c.fail(i, Edited, "hash does not match its content")
	}
	if c.es[i].bad != "" {
		return c.fail(i, Malformed, "%s", c.es[i].bad)
	}
	return nil
}

// classify names the problem of entry i, the first record that does not
// hold seq want or does not link to prevHash (the hash of seq want-1).
func (c *chain) classify(i int, want int64, prevHash string) error {
	ev := c.es[i].ev
	switch next := c.next(i); {
	case ev.Seq < 1:
		return c.fail(i, Malformed, "seq %d is not positive", ev.Seq)
	case ev.Seq < want:
		return c.fail(i, Inserted, "seq %d appears again after seq %d", ev.Seq, want-1)
	case next != nil && next.PrevHash == prevHash && !c.moved(i):
		return c.fail(i, Inserted, "the record after it links past it, to %s", prevName(want))
	case ev.Seq > want:
		return c.ahead(i, want, prevHash)
	}
	return c.unlinked(i, want)
}

// ahead classifies entry i, which claims a seq above want: inserted,
// reordered, edited, or seq want deleted.
func (c *chain) ahead(i int, want int64, prevHash string) error {
	ev := c.es[i].ev
	if len(c.at[ev.Seq]) > 1 {
		return c.fail(i, Inserted, "seq %d appears more than once", ev.Seq)
	}
	if ev.PrevHash == prevHash && !c.edited(i) {
		return c.fail(i, Inserted, "it links to %s but claims seq %d", prevName(want), ev.Seq)
	}
	if later := laterIndex(c.at[want], i); later >= 0 {
		if next := c.next(i); next != nil && next.Seq == want && !c.edited(i) {
			return c.fail(i, Reordered, "it comes before seq %d", want)
		}
		if !c.edited(later) {
			return c.fail(later, Reordered, "it comes after seq %d", ev.Seq)
		}
	}
	if c.edited(i) {
		return c.fail(i, Edited, "hash does not match its content")
	}
	return &ChainError{Seq: want, Line: c.es[i].line, Problem: Deleted, Detail: missingDetail(want, ev.Seq)}
}

// unlinked classifies entry i, which holds seq want but whose prev_hash
// does not link to the record before.
func (c *chain) unlinked(i int, want int64) error {
	ev := c.es[i].ev
	switch next := c.next(i); {
	case c.edited(i):
		return c.fail(i, Edited, "hash does not match its content")
	case i == 0:
		return c.fail(i, Edited, "the first record's prev_hash is not 64 zeros")
	case next != nil && next.PrevHash == ev.Hash:
		// This record and its successor agree: the one before changed.
		return c.fail(i-1, Edited, "record seq %d does not link to its hash", ev.Seq)
	case next == nil:
		return c.fail(i, Inserted, "it does not link to %s", prevName(want))
	}
	return c.fail(i, Edited, "prev_hash does not match the hash of %s", prevName(want))
}

// prevName names the record before seq want.
func prevName(want int64) string {
	if want == 1 {
		return "the start of the chain"
	}
	return fmt.Sprintf("seq %d", want-1)
}

func missingDetail(want, got int64) string {
	if want == 1 {
		return fmt.Sprintf("it is missing (the chain starts at seq %d)", got)
	}
	return fmt.Sprintf("it is missing (seq %d follows seq %d)", got, want-1)
}

// extraOf picks which of the two records at i and i+1, which claim the same
// seq and predecessor, is the inserted one: one whose content does not match
// its hash, else the one the following record does not link to, else the
// later one.
func extraOf(es []entry, i int) int {
	a, b := es[i], es[i+1]
	switch {
	case a.sum != a.ev.Hash:
		return i
	case b.sum != b.ev.Hash:
		return i + 1
	}
	if i+2 < len(es) && es[i+2].fatal == "" && es[i+2].ev.PrevHash == b.ev.Hash {
		return i
	}
	return i + 1
}

// laterIndex returns the first index in idx greater than i, or -1.
func laterIndex(idx []int, i int) int {
	for _, j := range idx {
		if j > i {
			return j
		}
	}
	return -1
}

// creationOf reports whether events hold the creation (created, bootstrap
// or emergency) of kv with its kid, and else the kids the creations of that
// version name instead.
func creationOf(events []Event, kv KeyVersion) (found bool, otherKIDs []string) {
	for _, ev := range events {
		if ev.Version != kv.Version || (ev.Type != Created && ev.Type != Bootstrap && ev.Type != Emergency) {
			continue
		}
		if ev.KID == "" || kv.KID == "" || ev.KID == kv.KID {
			return true, nil
		}
		otherKIDs = append(otherKIDs, ev.KID)
	}
	return false, otherKIDs
}

// Reconcile checks the chain against the key versions the backend holds:
// each must have a created, bootstrap or emergency event, and such an event
// that names a kid must name the one the backend holds; and every version
// the chain saw created must still be held or have a destroyed event. A held
// version without its event means the chain's tail was cut off; a version
// gone without its destroyed event was deleted outside the lifecycle (or its
// event lost to a crash): the error is a *ReconcileError listing them all.
//
// Read the backend's versions before the events: a version destroyed in
// between then already has its destroyed event (it is recorded first).
func Reconcile(events []Event, versions []KeyVersion) error {
	var missing, vanished []KeyVersion
	held := map[int]bool{}
	for _, kv := range versions {
		held[kv.Version] = true
	}
	created, destroyed := map[int]string{}, map[int]bool{}
	var order []int
	for _, ev := range events {
		switch ev.Type {
		case Created, Bootstrap, Emergency:
			if _, ok := created[ev.Version]; !ok {
				order = append(order, ev.Version)
			}
			created[ev.Version] = ev.KID
		case Destroyed:
			destroyed[ev.Version] = true
		}
	}
	for _, v := range order {
		if !held[v] && !destroyed[v] {
			vanished = append(vanished, KeyVersion{Version: v, KID: created[v]})
		}
	}
	for _, kv := range versions {
		if kv.Quarantined {
			continue
		}
		found, kids := creationOf(events, kv)
		switch {
		case found:
		case len(kids) > 0:
			return fmt.Errorf("audit: key version %d: the backend holds kid %s but the audit names kid %s",
				kv.Version, kv.KID, strings.Join(slices.Compact(kids), ", "))
		default:
			missing = append(missing, kv)
		}
	}
	if len(missing) > 0 || len(vanished) > 0 {
		return &ReconcileError{Missing: missing, Vanished: vanished}
	}
	return nil
}

// Decision is a propagation decision the store holds, which the chain must
// record: a confirmation (PropagationConfirmed, its event's reason naming
// the client) or an activation written without every confirmation
// (ActivationUnconfirmed).
type Decision struct {
	Type    Type
	Version int
	// Reason is the PropagationConfirmed event's reason (one per client);
	// ignored for ActivationUnconfirmed.
	Reason string
}

func (d Decision) String() string {
	if d.Type == PropagationConfirmed {
		return fmt.Sprintf("%s of version %d (%s)", d.Type, d.Version, d.Reason)
	}
	return fmt.Sprintf("%s of version %d", d.Type, d.Version)
}

// DecisionError lists the stored propagation decisions without their event
// in the chain: lost to a crash between storing the decision and recording
// the event (keyd records it at its next start), or a decision written
// outside keyd.
type DecisionError struct{ Missing []Decision }

func (e *DecisionError) Error() string {
	names := make([]string, len(e.Missing))
	for i, d := range e.Missing {
		names[i] = d.String()
	}
	return "propagation decisions stored without their audit event: " + strings.Join(names, "; ") +
		" (lost to a crash before the event was written: keyd records it at its next start; or written outside keyd)"
}

// ReconcileDecisions checks that every decision has its event in events:
// nil, or a *DecisionError listing those that have none. Read the
// decisions before the events: one stored in between then has its event
// already, or is still being recorded.
func ReconcileDecisions(events []Event, decisions []Decision) error {
	var missing []Decision
	for _, d := range decisions {
		key := KeyOf(d.Type, d.Version, d.Reason)
		if !slices.ContainsFunc(events, func(ev Event) bool { return KeyOf(ev.Type, ev.Version, ev.Reason) == key }) {
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		return &DecisionError{Missing: missing}
	}
	return nil
}
