package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tenEvents writes a valid chain of 10 events to a fresh log and returns the
// file's lines (without newlines) and the events.
func tenEvents(t *testing.T) ([][]byte, []Event) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := newFileLog(t, path)
	var evs []Event
	for v := 1; v <= 10; v++ {
		evs = append(evs, mustRecord(t, l, Event{Type: Created, Version: v, KID: fmt.Sprintf("kid-%d", v), Actor: "admin", Reason: fmt.Sprintf("reason %d", v)}))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	if len(lines) != 10 {
		t.Fatalf("log has %d lines, want 10", len(lines))
	}
	return lines, evs
}

// forge returns ev as a log line with a hash recomputed over its content, as
// a tamperer who knows the scheme would write it.
func forge(t *testing.T, ev Event) []byte {
	t.Helper()
	h, err := Hash(ev)
	if err != nil {
		t.Fatal(err)
	}
	ev.Hash = h
	line, err := encodeLine(ev)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(line, []byte("\n"))
}

func writeLines(t *testing.T, lines [][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tampered.log")
	data := append(bytes.Join(lines, []byte("\n")), '\n')
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVerifyFileTamper(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(t *testing.T, lines [][]byte, evs []Event) [][]byte
		seq     int64
		problem Problem
		line    int // 0: not checked
		msg     string
	}{
		{
			name: "intact",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				return lines
			},
		},
		{
			name: "edit a field",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				lines[4] = bytes.Replace(lines[4], []byte(`"actor":"admin"`), []byte(`"actor":"nobody"`), 1)
				return lines
			},
			seq: 5, problem: Edited,
			msg: "record seq 5: edited: hash does not match its content",
		},
		{
			name: "edit a field and recompute its hash",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				ev := evs[4]
				ev.Reason = "nothing happened"
				lines[4] = forge(t, ev)
				return lines
			},
			seq: 5, problem: Edited,
			msg: "record seq 5: edited: record seq 6 does not link to its hash",
		},
		{
			name: "edit the seq",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				lines[4] = bytes.Replace(lines[4], []byte(`"seq":5,`), []byte(`"seq":50,`), 1)
				return lines
			},
			seq: 50, problem: Edited, line: 5,
		},
		{
			name: "edit the first prev_hash and recompute",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				ev := evs[0]
				ev.PrevHash = strings.Repeat("1", 64)
				lines[0] = forge(t, ev)
				return lines
			},
			seq: 1, problem: Edited,
		},
		{
			name: "delete a line",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				return slices.Delete(lines, 4, 5)
			},
			seq: 5, problem: Deleted,
			msg: "record seq 5: deleted: it is missing (seq 6 follows seq 4)",
		},
		{
			name: "delete the first line",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				return lines[1:]
			},
			seq: 1, problem: Deleted,
		},
		{
			name: "delete two lines",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				return slices.Delete(lines, 6, 8)
			},
			seq: 7, problem: Deleted,
		},
		{
			name: "swap two lines",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				lines[4], lines[5] = lines[5], lines[4]
				return lines
			},
			seq: 6, problem: Reordered,
			msg: "record seq 6: reordered: it comes before seq 5",
		},
		{
			name: "move a line to the end",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				moved := lines[2]
				return append(slices.Delete(lines, 2, 3), moved)
			},
			seq: 3, problem: Reordered, line: 10,
		},
		{
			name: "move a line forward",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				moved := lines[8]
				lines = slices.Delete(lines, 8, 9)
				return slices.Insert(lines, 2, moved)
			},
			seq: 9, problem: Reordered, line: 3,
		},
		{
			name: "insert a copy with an edited field",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				forged := bytes.Replace(lines[4], []byte(`"reason":"reason 5"`), []byte(`"reason":"forged"`), 1)
				return slices.Insert(lines, 5, forged)
			},
			seq: 5, problem: Inserted, line: 6,
		},
		{
			name: "insert a forged line that links and has a valid hash",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				ev := evs[4]
				ev.Type, ev.Reason = Destroyed, "forged"
				return slices.Insert(lines, 4, forge(t, ev))
			},
			seq: 5, problem: Inserted, line: 5,
		},
		{
			name: "insert a forged line with a new seq",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				ev := evs[9]
				ev.Seq, ev.PrevHash = 11, strings.Repeat("a", 64)
				return slices.Insert(lines, 4, forge(t, ev))
			},
			seq: 11, problem: Inserted, line: 5,
		},
		{
			name: "insert a line that links but breaks the sequence",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				ev := evs[4]
				ev.Seq, ev.Reason = 42, "forged"
				return slices.Insert(lines, 4, forge(t, ev))
			},
			seq: 42, problem: Inserted, line: 5,
		},
		{
			name: "append a line that does not chain",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				ev := evs[9]
				ev.Seq, ev.PrevHash, ev.Reason = 11, strings.Repeat("b", 64), "forged"
				return append(lines, forge(t, ev))
			},
			seq: 11, problem: Inserted, line: 11,
		},
		{
			name: "duplicate an earlier line at the end",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				return append(lines, lines[3])
			},
			seq: 4, problem: Inserted, line: 11,
		},
		{
			name: "garbage line in the middle",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				lines[6] = []byte(`{"seq":7,"time":`)
				return lines
			},
			seq: 0, problem: Malformed, line: 7,
		},
		{
			name: "unknown member with a recomputed hash",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				raw := bytes.Replace(lines[9], []byte(`"seq":10,`), []byte(`"seq":10,"note":"x",`), 1)
				h, err := contentHash(raw)
				if err != nil {
					t.Fatal(err)
				}
				lines[9] = bytes.Replace(raw, []byte(evs[9].Hash), []byte(h), 1)
				return lines
			},
			seq: 10, problem: Malformed,
		},
		{
			name: "empty line",
			tamper: func(t *testing.T, lines [][]byte, evs []Event) [][]byte {
				return slices.Insert(lines, 3, []byte{})
			},
			problem: Malformed, line: 4,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines, evs := tenEvents(t)
			path := writeLines(t, tc.tamper(t, lines, evs))
			err := VerifyFile(path, nil)
			if tc.problem == "" {
				if err != nil {
					t.Fatalf("VerifyFile: %v", err)
				}
				return
			}
			t.Log(err)
			var ce *ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("VerifyFile = %v, want a *ChainError", err)
			}
			if ce.Seq != tc.seq || ce.Problem != tc.problem || (tc.line != 0 && ce.Line != tc.line) {
				t.Errorf("got seq %d %s at line %d (%v); want seq %d %s at line %d", ce.Seq, ce.Problem, ce.Line, err, tc.seq, tc.problem, tc.line)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("message %q, want %q", err, tc.msg)
			}
		})
	}
}

func TestVerifyFileTornLastLine(t *testing.T) {
	lines, _ := tenEvents(t)
	path := writeLines(t, lines)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":11,"ti`)
	f.Close()
	err = VerifyFile(path, nil)
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Problem != Malformed || ce.Line != 11 {
		t.Fatalf("VerifyFile = %v, want line 11 malformed", err)
	}
}

func TestVerifyEvents(t *testing.T) {
	_, evs := tenEvents(t)
	if err := Verify(evs); err != nil {
		t.Fatalf("Verify(intact) = %v", err)
	}
	if err := Verify(nil); err != nil {
		t.Fatalf("Verify(empty) = %v", err)
	}
	edited := slices.Clone(evs)
	edited[2].Actor = "someone else"
	err := Verify(edited)
	if err == nil || err.Error() != "record seq 3: edited: hash does not match its content" {
		t.Errorf("Verify(edited) = %v", err)
	}
	bad := slices.Clone(evs)
	bad[0].Type = "revoked"
	bad[0].Hash, _ = Hash(bad[0])
	bad[1].PrevHash = bad[0].Hash
	if err := Verify(bad[:1]); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("Verify(unknown type) = %v, want malformed", err)
	}
}

func TestReconcile(t *testing.T) {
	lines, evs := tenEvents(t)
	held := []KeyVersion{{Version: 8, KID: "kid-8"}, {Version: 9, KID: "kid-9"}, {Version: 10, KID: "kid-10"}}
	// destroyed returns evs followed by destroyed events of versions 1 to n.
	destroyed := func(evs []Event, n int) []Event {
		out := slices.Clone(evs)
		for v := 1; v <= n; v++ {
			out = append(out, Event{Type: Destroyed, Version: v, KID: fmt.Sprintf("kid-%d", v)})
		}
		return out
	}
	tests := []struct {
		name     string
		events   []Event
		held     []KeyVersion
		wantErr  string
		missing  []int
		vanished []int
	}{
		{name: "complete", events: destroyed(evs, 7), held: held},
		{
			name: "no versions held", events: evs, held: nil,
			wantErr:  "key versions 1 (kid kid-1), 2 (kid kid-2), 3 (kid kid-3), 4 (kid kid-4), 5 (kid kid-5), 6 (kid kid-6), 7 (kid kid-7), 8 (kid kid-8), 9 (kid kid-9), 10 (kid kid-10) are created in the audit but no longer held by the backend, without a destroyed event",
			vanished: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
		},
		{name: "held versions without kid", events: destroyed(evs, 9), held: []KeyVersion{{Version: 10}}},
		{
			name:     "a version destroyed without its event",
			events:   destroyed(evs, 6),
			held:     held,
			wantErr:  "key version 7 (kid kid-7) is created in the audit but no longer held by the backend, without a destroyed event: deleted outside the lifecycle, or the event was lost",
			vanished: []int{7},
		},
		{
			name:   "a quarantined version did not vanish",
			events: destroyed(evs, 6),
			held:   append([]KeyVersion{{Version: 7, Quarantined: true}}, held...),
		},
		{
			name:    "tail cut off",
			events:  destroyed(evs[:9], 7),
			held:    held,
			wantErr: "key version 10 (kid kid-10) is held by the backend but has no created, bootstrap or emergency event: the audit tail was cut off",
			missing: []int{10},
		},
		{
			name:    "longer tail cut off",
			events:  destroyed(evs[:7], 7),
			held:    held,
			wantErr: "key versions 8 (kid kid-8), 9 (kid kid-9), 10 (kid kid-10) are held",
			missing: []int{8, 9, 10},
		},
		{
			name:    "wrong kid",
			events:  destroyed(evs, 9),
			held:    []KeyVersion{{Version: 10, KID: "other"}},
			wantErr: "key version 10: the backend holds kid other but the audit names kid kid-10",
		},
		{
			name:   "emergency and bootstrap count",
			events: []Event{{Type: Bootstrap, Version: 1, KID: "a"}, {Type: Emergency, Version: 2}},
			held:   []KeyVersion{{Version: 1, KID: "a"}, {Version: 2, KID: "b"}},
		},
		{
			name:    "activated alone does not count",
			events:  []Event{{Type: Activated, Version: 1, KID: "a"}},
			held:    []KeyVersion{{Version: 1, KID: "a"}},
			wantErr: "key version 1 (kid a) is held",
			missing: []int{1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Reconcile(tc.events, tc.held)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Reconcile = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Reconcile = %v, want %q", err, tc.wantErr)
			}
			var re *ReconcileError
			if tc.missing != nil {
				if !errors.As(err, &re) {
					t.Fatalf("Reconcile = %T, want *ReconcileError", err)
				}
				var got []int
				for _, kv := range re.Missing {
					got = append(got, kv.Version)
				}
				if !slices.Equal(got, tc.missing) {
					t.Errorf("missing %v, want %v", got, tc.missing)
				}
			}
			if tc.vanished != nil {
				if !errors.As(err, &re) {
					t.Fatalf("Reconcile = %T, want *ReconcileError", err)
				}
				var got []int
				for _, kv := range re.Vanished {
					got = append(got, kv.Version)
				}
				if !slices.Equal(got, tc.vanished) {
					t.Errorf("vanished %v, want %v", got, tc.vanished)
				}
			}
		})
	}

	// A log file whose tail was cut off still verifies as a chain, but not
	// against the key versions the backend holds.
	held = nil
	for v := 1; v <= 10; v++ {
		held = append(held, KeyVersion{Version: v, KID: fmt.Sprintf("kid-%d", v)})
	}
	path := writeLines(t, lines[:9])
	if err := VerifyFile(path, nil); err != nil {
		t.Fatalf("VerifyFile(cut, no versions) = %v", err)
	}
	err := VerifyFile(path, held)
	var re *ReconcileError
	if !errors.As(err, &re) || len(re.Missing) != 1 || re.Missing[0].Version != 10 {
		t.Fatalf("VerifyFile(cut, versions) = %v, want version 10 missing", err)
	}
	if err := VerifyFile(writeLines(t, lines), held); err != nil {
		t.Fatalf("VerifyFile(complete, versions) = %v", err)
	}
}

func TestVerifyFileMissing(t *testing.T) {
	if err := VerifyFile(filepath.Join(t.TempDir(), "nope.log"), nil); err == nil {
		t.Fatal("VerifyFile(missing file) = nil")
	}
}

// FuzzVerifyLines checks that no log content makes verification panic.
func FuzzVerifyLines(f *testing.F) {
	good := `{"seq":1,"time":"2025-03-01T11:30:45Z","type":"created","kid":"k","version":2,"actor":"a","reason":"r","prev_hash":"` +
		ZeroHash + `","hash":"` + ZeroHash + `"}` + "\n"
	for _, seed := range []string{"", "\n", good, good + good, good[:40], "[]\n", "null\n", `{"seq":-1}` + "\n", `{"seq":1e99}` + "\n", "{\"a\":\"\\ud800\"}\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = verifyEntries(parseLines(data))
	})
}

// TestReconcileDecisions (issue 20, item 4): a stored propagation decision
// without its event in the chain is reported; each confirmation is matched
// with its own client's event.
func TestReconcileDecisions(t *testing.T) {
	events := []Event{
		{Type: PropagationConfirmed, Version: 2, Reason: "client ecommerce confirmed by fetch"},
		{Type: ActivationUnconfirmed, Version: 2, Reason: "activated after the max wait without confirmation from: notes"},
	}
	ok := []Decision{
		{Type: PropagationConfirmed, Version: 2, Reason: "client ecommerce confirmed by fetch"},
		{Type: ActivationUnconfirmed, Version: 2},
	}
	if err := ReconcileDecisions(events, ok); err != nil {
		t.Fatalf("every decision has its event: %v", err)
	}
	missing := []Decision{
		{Type: PropagationConfirmed, Version: 2, Reason: "client notes confirmed by admin"},
		{Type: ActivationUnconfirmed, Version: 3},
	}
	err := ReconcileDecisions(events, append(ok, missing...))
	var de *DecisionError
	if !errors.As(err, &de) || len(de.Missing) != 2 || de.Missing[0] != missing[0] || de.Missing[1] != missing[1] {
		t.Fatalf("err = %v, want both missing decisions", err)
	}
	for _, want := range []string{"client notes confirmed by admin", "activation_unconfirmed of version 3", "crash"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}
