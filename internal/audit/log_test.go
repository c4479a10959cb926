package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestRecordDedup(t *testing.T) {
	tests := []struct {
		name   string
		events []Event
		want   int // events in the chain
	}{
		{
			name: "same type and version twice",
			events: []Event{
				{Type: Created, Version: 2, KID: "k2", Actor: "scheduler"},
				{Type: Created, Version: 2, KID: "k2", Actor: "scheduler"},
			},
			want: 1,
		},
		{
			name: "one emergency seen by two replicas with their own actors",
			events: []Event{
				{Type: Emergency, Version: 3, KID: "k3", Actor: "admin", Reason: "leak"},
				{Type: Emergency, Version: 3, KID: "k3", Actor: "scheduler", Reason: "completing an emergency"},
			},
			want: 1,
		},
		{
			name: "same type, other versions",
			events: []Event{
				{Type: Activated, Version: 1, KID: "k1"},
				{Type: Activated, Version: 2, KID: "k2"},
			},
			want: 2,
		},
		{
			name: "same version, other types",
			events: []Event{
				{Type: Created, Version: 2, KID: "k2"},
				{Type: Activated, Version: 2, KID: "k2"},
				{Type: Retired, Version: 2, KID: "k2"},
				{Type: Destroyed, Version: 2, KID: "k2"},
			},
			want: 4,
		},
		{
			name: "rotation_failed: the same failure once",
			events: []Event{
				{Type: RotationFailed, Version: 4, Reason: "vault unavailable"},
				{Type: RotationFailed, Version: 4, Reason: "vault unavailable"},
			},
			want: 1,
		},
		{
			name: "rotation_failed: each distinct failure",
			events: []Event{
				{Type: RotationFailed, Version: 4, Reason: "vault unavailable"},
				{Type: RotationFailed, Version: 4, Reason: "permission denied"},
				{Type: RotationFailed, Version: 5, Reason: "vault unavailable"},
			},
			want: 3,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			l, s := newFileLog(t, path)
			var first Event
			for i, e := range tc.events {
				got := mustRecord(t, l, e)
				if i == 0 {
					first = got
				}
				if tc.want == 1 && got != first {
					t.Errorf("duplicate returned %+v, want the existing event %+v", got, first)
				}
			}
			// A second replica (its own Log and store) dedupes against the file.
			l2, _ := newFileLog(t, path)
			for _, e := range tc.events {
				mustRecord(t, l2, e)
			}
			evs, err := s.Read(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != tc.want {
				t.Errorf("chain holds %d events, want %d: %+v", len(evs), tc.want, evs)
			}
			if err := Verify(evs); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestRecordRejectsBadInput(t *testing.T) {
	l, s := newFileLog(t, filepath.Join(t.TempDir(), "audit.log"))
	for _, e := range []Event{{Type: "revoked", Version: 1}, {Type: "", Version: 1}, {Type: Created, Version: -1}} {
		if _, err := l.Record(context.Background(), e); err == nil {
			t.Errorf("Record(%+v) accepted it", e)
		}
	}
	if evs, _ := s.Read(context.Background(), 0); len(evs) != 0 {
		t.Errorf("chain holds %d events, want none", len(evs))
	}
}

func TestRecordIgnoresCallerChainFields(t *testing.T) {
	l, _ := newFileLog(t, filepath.Join(t.TempDir(), "audit.log"))
	ev := mustRecord(t, l, Event{Seq: 99, Time: "yesterday", PrevHash: "x", Hash: "y", Type: Bootstrap, Version: 1})
	if ev.Seq != 1 || ev.PrevHash != ZeroHash || ev.Time != "2025-03-01T11:30:45Z" {
		t.Errorf("Record kept caller values: %+v", ev)
	}
	if h, _ := Hash(ev); h != ev.Hash {
		t.Errorf("hash %s, want %s", ev.Hash, h)
	}
}

// concurrentReplicas has two Logs, each over its own store, record the same
// n events from several goroutines each, and checks the store holds one
// valid chain with every event exactly once.
func concurrentReplicas(t *testing.T, a, b Store, n int) {
	t.Helper()
	var conflicts atomic.Int64
	logs := []*Log{NewLog(countConflicts{a, &conflicts}, nil), NewLog(countConflicts{b, &conflicts}, nil)}
	const workers = 4
	var wg sync.WaitGroup
	errs := make(chan error, len(logs)*workers)
	for _, l := range logs {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for v := 1 + w; v <= n; v += workers {
					e := Event{Type: Created, Version: v, KID: fmt.Sprintf("kid-%d", v), Actor: "scheduler"}
					got, err := l.Record(context.Background(), e)
					if err != nil {
						errs <- err
						return
					}
					if got.Version != v || got.Type != Created {
						errs <- fmt.Errorf("Record(v%d) returned %+v", v, got)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d appends lost a race and were retried", conflicts.Load())
	for _, s := range []Store{a, b} {
		evs, err := s.Read(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != n {
			t.Fatalf("chain holds %d events, want %d", len(evs), n)
		}
		if err := Verify(evs); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		seen := make(map[int]bool)
		for _, ev := range evs {
			if seen[ev.Version] {
				t.Fatalf("version %d recorded twice", ev.Version)
			}
			seen[ev.Version] = true
		}
	}
}

// countConflicts counts the appends that lose the race for a seq.
type countConflicts struct {
	Store
	n *atomic.Int64
}

func (c countConflicts) Append(ctx context.Context, ev Event) error {
	err := c.Store.Append(ctx, ev)
	if errors.Is(err, ErrSeqTaken) {
		c.n.Add(1)
	}
	return err
}

func TestConcurrentFileReplicas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	concurrentReplicas(t, a, b, 200)
	if err := VerifyFile(path, nil); err != nil {
		t.Fatalf("VerifyFile: %v", err)
	}
}

func TestFileStoreAppendCreateOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, s := newFileLog(t, path)
	ev := mustRecord(t, l, Event{Type: Bootstrap, Version: 1})
	ctx := context.Background()
	if err := s.Append(ctx, ev); !errors.Is(err, ErrSeqTaken) {
		t.Errorf("Append(existing seq) = %v, want ErrSeqTaken", err)
	}
	gap := ev
	gap.Seq = 5
	if err := s.Append(ctx, gap); err == nil || errors.Is(err, ErrSeqTaken) {
		t.Errorf("Append(seq gap) = %v, want a plain error", err)
	}
	unlinked := ev
	unlinked.Seq, unlinked.PrevHash = 2, strings.Repeat("f", 64)
	if err := s.Append(ctx, unlinked); err == nil {
		t.Error("Append(unlinked) accepted it")
	}
	if evs, _ := s.Read(ctx, 0); len(evs) != 1 {
		t.Errorf("chain holds %d events, want 1", len(evs))
	}
}

func TestFileStorePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "audit.log")
	l, _ := newFileLog(t, path)
	mustRecord(t, l, Event{Type: Bootstrap, Version: 1})
	for _, p := range []string{path, path + ".lock"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir: %v %v, want mode 0700", fi.Mode().Perm(), err)
	}
}

func TestOpenRepairsTornLastLine(t *testing.T) {
	tests := []struct {
		name string
		torn func(good []byte) []byte // bytes a crash left after the good lines
	}{
		{"half a line", func(good []byte) []byte { return good[:len(good)/2] }},
		{"a whole line without its newline", func(good []byte) []byte { return good[:len(good)-1] }},
		{"zeros", func(good []byte) []byte { return make([]byte, 64) }},
		{"garbage line with a newline", func(good []byte) []byte { return []byte("{\"seq\":3,\"ti\x00\x00\n") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.log")
			l, s := newFileLog(t, path)
			mustRecord(t, l, Event{Type: Bootstrap, Version: 1})
			second := mustRecord(t, l, Event{Type: Created, Version: 2})
			s.Close()

			// What the crashed writer would have written next.
			next := second
			next.Seq, next.PrevHash, next.Type = 3, second.Hash, Activated
			line, _ := encodeLine(next)
			torn := tc.torn(line)
			appendBytes(t, path, torn)

			s2, err := OpenFile(path, fixedClock())
			if err != nil {
				t.Fatalf("OpenFile: %v", err)
			}
			defer s2.Close()
			evs, err := s2.Read(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			checkTornRecord(t, path, evs, 3, torn)
			if err := VerifyFile(path, nil); err != nil {
				t.Errorf("VerifyFile after repair: %v", err)
			}
			// Opening again finds nothing to repair.
			s3, err := OpenFile(path, fixedClock())
			if err != nil {
				t.Fatal(err)
			}
			defer s3.Close()
			if again, _ := s3.Read(context.Background(), 0); len(again) != 3 {
				t.Errorf("second open: %d events, want 3", len(again))
			}
		})
	}
}

// TestMalformedMiddleLineIsKeptAndReported: a garbage line in the middle of
// the log no longer stops keyd from starting. The line stays (the evidence),
// the store reports it, the chain grows from the last good event, and every
// verification names the line.
func TestMalformedMiddleLineIsKeptAndReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, s := newFileLog(t, path)
	mustRecord(t, l, Event{Type: Bootstrap, Version: 1})
	mustRecord(t, l, Event{Type: Activated, Version: 1})
	s.Close()
	data, _ := os.ReadFile(path)
	first, rest, _ := bytes.Cut(data, []byte("\n"))
	garbage := bytes.Join([][]byte{first, []byte("not json"), rest}, []byte("\n"))
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenFile(path, nil)
	if err != nil {
		t.Fatalf("OpenFile with a garbage middle line = %v, want it open", err)
	}
	defer s2.Close()
	l2 := NewLog(s2, nil)
	ev := mustRecord(t, l2, Event{Type: Created, Version: 2})
	if ev.Seq != 3 {
		t.Errorf("next event seq %d, want 3", ev.Seq)
	}
	if p := strings.Join(l2.Problems(), "\n"); !strings.Contains(p, "line 2") || !strings.Contains(p, "malformed") {
		t.Errorf("Problems = %q, want line 2 named malformed", p)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, []byte("\nnot json\n")) {
		t.Error("the garbage line was removed; it must stay as evidence")
	}
	var ce *ChainError
	if err := VerifyFile(path, nil); !errors.As(err, &ce) || ce.Line != 2 || ce.Problem != Malformed {
		t.Errorf("VerifyFile = %v, want line 2 malformed", err)
	}
}

// crashingStore simulates a crash in the middle of an append: it writes the
// first half of the event's line to the log and fails.
type crashingStore struct {
	*FileStore
	path string
}

func (c crashingStore) Append(ctx context.Context, ev Event) error {
	line, err := encodeLine(ev)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(line[:len(line)/2]); err != nil {
		return err
	}
	return errors.New("simulated crash mid-append")
}

func TestRecordCrashMidAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, s := newFileLog(t, path)
	mustRecord(t, l, Event{Type: Bootstrap, Version: 1})

	crashing := NewLog(crashingStore{FileStore: s, path: path}, fixedClock())
	if ev, err := crashing.Record(context.Background(), Event{Type: Created, Version: 2}); err == nil {
		t.Fatalf("Record through a crashing store = %+v, nil: the operation would be reported done", ev)
	}

	// The same process (or another replica) carries on: the store finds the
	// torn line, moves it aside and records that; the retried event follows.
	ev := mustRecord(t, l, Event{Type: Created, Version: 2})
	if ev.Seq != 3 {
		t.Errorf("retried event has seq %d, want 3 (after the torn_record)", ev.Seq)
	}
	evs, err := s.Read(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("chain holds %d events, want 3", len(evs))
	}
	checkTornRecord(t, path, evs[:2], 2, nil)
	if err := VerifyFile(path, []KeyVersion{{Version: 1}, {Version: 2}}); err != nil {
		t.Errorf("VerifyFile: %v", err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkTornRecord checks that the last of evs is a torn_record at seq whose
// reason names a side file, next to the log, holding torn (when not nil).
func checkTornRecord(t *testing.T, path string, evs []Event, seq int64, torn []byte) {
	t.Helper()
	if int64(len(evs)) != seq {
		t.Fatalf("chain holds %d events, want %d", len(evs), seq)
	}
	last := evs[len(evs)-1]
	if last.Type != TornRecord || last.Seq != seq {
		t.Fatalf("last event %+v, want a torn_record at seq %d", last, seq)
	}
	sides, _ := filepath.Glob(path + ".torn-*")
	if len(sides) != 1 {
		t.Fatalf("side files %v, want one", sides)
	}
	if !strings.Contains(last.Reason, filepath.Base(sides[0])) {
		t.Errorf("reason %q does not name the side file %s", last.Reason, filepath.Base(sides[0]))
	}
	got, err := os.ReadFile(sides[0])
	if err != nil {
		t.Fatal(err)
	}
	if torn != nil && string(got) != string(torn) {
		t.Errorf("side file holds %q, want %q", got, torn)
	}
	if len(got) == 0 {
		t.Error("side file is empty")
	}
	if fi, _ := os.Stat(sides[0]); fi.Mode().Perm() != 0o600 {
		t.Errorf("side file mode %v, want 0600", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("repaired log mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestTwoProcessesOneFile runs two processes (this test binary again) that
// record the same events on one log file at the same time, as two replicas
// on one host would: the flock makes them extend one chain.
func TestTwoProcessesOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var cmds []*exec.Cmd
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessRecord$")
		cmd.Env = append(os.Environ(), "KEYD_AUDIT_HELPER_LOG="+path)
		cmds = append(cmds, cmd)
	}
	outs := make([][]byte, len(cmds))
	errs := make([]error, len(cmds))
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Go(func() { outs[i], errs[i] = cmd.CombinedOutput() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, outs[i])
		}
	}
	s, err := OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evs, err := s.Read(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != helperEvents {
		t.Fatalf("chain holds %d events, want %d", len(evs), helperEvents)
	}
	if err := VerifyFile(path, nil); err != nil {
		t.Fatalf("VerifyFile: %v", err)
	}
}

const helperEvents = 100

// TestHelperProcessRecord is the child of TestTwoProcessesOneFile.
func TestHelperProcessRecord(t *testing.T) {
	path := os.Getenv("KEYD_AUDIT_HELPER_LOG")
	if path == "" {
		t.Skip("runs only as a child process of TestTwoProcessesOneFile")
	}
	s, err := OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := NewLog(s, nil)
	for v := 1; v <= helperEvents; v++ {
		if _, err := l.Record(context.Background(), Event{Type: Created, Version: v, Actor: fmt.Sprintf("pid %d", os.Getpid())}); err != nil {
			t.Fatal(err)
		}
	}
}
