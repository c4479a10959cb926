package audit

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// chainOf returns n linked events with their hashes (seq 1..n).
func chainOf(t *testing.T, n int) []Event {
	t.Helper()
	prev := ZeroHash
	var evs []Event
	for i := 1; i <= n; i++ {
		ev := Event{Seq: int64(i), Time: "2030-01-01T00:00:00Z", Type: Created, Version: i, KID: fmt.Sprint("kid-", i), Actor: "admin", PrevHash: prev}
		ev = rehash(t, ev)
		prev = ev.Hash
		evs = append(evs, ev)
	}
	return evs
}

// rehash sets ev.Hash to the hash of its content, as a tamperer would.
func rehash(t *testing.T, ev Event) Event {
	t.Helper()
	h, err := Hash(ev)
	if err != nil {
		t.Fatal(err)
	}
	ev.Hash = h
	return ev
}

// wantChainError checks that err is a *ChainError for seq with problem p
// (and detail containing detail); a nil p wants no error.
func wantChainError(t *testing.T, err error, seq int64, p Problem, detail string) {
	t.Helper()
	if p == "" {
		if err != nil {
			t.Fatalf("error %v, want none", err)
		}
		return
	}
	var ce *ChainError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a *ChainError", err)
	}
	if ce.Seq != seq || ce.Problem != p || !strings.Contains(ce.Detail, detail) {
		t.Fatalf("got seq %d %s (%s); want seq %d %s (%s)", ce.Seq, ce.Problem, ce.Detail, seq, p, detail)
	}
}

// TestClassify names the first record that is not in place: it does not
// hold the next seq, or does not link to the record before.
func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		name    string
		events  func(e []Event) []Event
		i       int   // the first record not in place
		want    int64 // the seq expected there
		seq     int64
		problem Problem
		detail  string
	}{
		{"seq not positive", func(e []Event) []Event { e[0].Seq = 0; return e[:1] }, 0, 1, 0, Malformed, "not positive"},
		{"seq again", func(e []Event) []Event { return append(e[:3:3], e[1]) }, 3, 4, 2, Inserted, "appears again after seq 3"},
		{"the next links past it", func(e []Event) []Event {
			x := rehash(t, Event{Seq: 7, Time: e[0].Time, Type: Created, Version: 7, PrevHash: strings.Repeat("a", 64)})
			return []Event{e[0], x, e[1], e[2]}
		}, 1, 2, 7, Inserted, "links past it, to seq 1"},
		{"deleted", func(e []Event) []Event { return []Event{e[0], e[2], e[3]} }, 1, 2, 2, Deleted, "seq 3 follows seq 1"},
		{"reordered", func(e []Event) []Event { return []Event{e[0], e[2], e[1], e[3]} }, 1, 2, 3, Reordered, "comes before seq 2"},
		{"reordered, the earlier one later", func(e []Event) []Event { e[2].Reason = "edited"; return []Event{e[0], e[2], e[3], e[1]} }, 1, 2, 2, Reordered, "comes after seq 3"},
		{"seq twice ahead", func(e []Event) []Event {
			x := e[2]
			x.Reason = "twin"
			return []Event{e[0], e[2], rehash(t, x)}
		}, 1, 2, 3, Inserted, "more than once"},
		{"links to the previous but claims a later seq", func(e []Event) []Event {
			x := e[1]
			x.Seq = 5
			return []Event{e[0], rehash(t, x)}
		}, 1, 2, 5, Inserted, "links to seq 1 but claims seq 5"},
		{"ahead and edited", func(e []Event) []Event { e[2].Reason = "edited"; return []Event{e[0], e[2]} }, 1, 2, 3, Edited, "does not match"},
		{"first prev_hash not zeros", func(e []Event) []Event { e[0].PrevHash = strings.Repeat("b", 64); e[0] = rehash(t, e[0]); return e }, 0, 1, 1, Edited, "not 64 zeros"},
		{"unlinked and edited", func(e []Event) []Event { e[1].PrevHash = strings.Repeat("c", 64); return e }, 1, 2, 2, Edited, "does not match its content"},
		{"the one before changed", func(e []Event) []Event { e[0].Reason = "new"; e[0] = rehash(t, e[0]); return e }, 1, 2, 1, Edited, "record seq 2 does not link"},
		{"the last does not link", func(e []Event) []Event { e[0].Reason = "new"; e[0] = rehash(t, e[0]); return e[:2] }, 1, 2, 2, Inserted, "does not link to seq 1"},
		{"a middle record does not link", func(e []Event) []Event {
			e[1].PrevHash = strings.Repeat("d", 64)
			e[1] = rehash(t, e[1])
			return e
		}, 1, 2, 2, Edited, "prev_hash does not match the hash of seq 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			es := entriesOf(tt.events(chainOf(t, 4)))
			prevHash := ZeroHash
			if tt.i > 0 {
				prevHash = es[tt.i-1].ev.Hash
			}
			err := newChain(es).classify(tt.i, tt.want, prevHash)
			wantChainError(t, err, tt.seq, tt.problem, tt.detail)
			// The walk reaches the same verdict.
			wantChainError(t, verifyEntries(es), tt.seq, tt.problem, tt.detail)
		})
	}
}

// TestVerifyEntries: the walk accepts a sound chain and stops at the first
// record in place that is not sound (checkLinked), or unreadable.
func TestVerifyEntries(t *testing.T) {
	for _, tt := range []struct {
		name    string
		edit    func(es []entry) []entry
		seq     int64
		problem Problem
		detail  string
	}{
		{"sound", func(es []entry) []entry { return es }, 0, "", ""},
		{"empty", func([]entry) []entry { return nil }, 0, "", ""},
		{"cut tail", func(es []entry) []entry { return es[:2] }, 0, "", ""},
		{"unreadable", func(es []entry) []entry { es[1].fatal = "empty line"; return es }, 0, Malformed, "empty line"},
		{"edited in place", func(es []entry) []entry { es[2].ev.Reason = "x"; es[2].sum = "0"; return es }, 3, Edited, "does not match"},
		{"not well-formed", func(es []entry) []entry { es[1].bad = `unknown type "x"`; return es }, 2, Malformed, "unknown type"},
		{"two records on one link", func(es []entry) []entry {
			x := es[1]
			x.ev.Reason = "twin"
			x.ev = rehash(t, x.ev)
			x.sum = x.ev.Hash
			return []entry{es[0], es[1], x}
		}, 2, Inserted, "a second record"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			es := tt.edit(entriesOf(chainOf(t, 4)))
			for i := range es {
				es[i].line = i + 1
			}
			wantChainError(t, verifyEntries(es), tt.seq, tt.problem, tt.detail)
		})
	}
}
