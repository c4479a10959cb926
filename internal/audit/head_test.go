package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// headDir opens a log with a head file the way keyd serve does and records
// three events; it returns the log path, the head path and the events.
func headDir(t *testing.T) (logPath, headPath string, evs []Event) {
	t.Helper()
	dir := t.TempDir()
	logPath, headPath = filepath.Join(dir, "audit.log"), filepath.Join(dir, "keys", "audit-head.json")
	if err := os.MkdirAll(filepath.Dir(headPath), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFileWithHead(logPath, headPath, fixedClock())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := NewLog(s, fixedClock())
	for v := 1; v <= 3; v++ {
		evs = append(evs, mustRecord(t, l, Event{Type: Created, Version: v}))
	}
	return logPath, headPath, evs
}

// TestDeletedOrReplacedLogIsReported: the head kept beside the keys makes a
// deleted, replaced or cut-off audit.log show, instead of a new chain that
// verifies as intact. keyd keeps running (and recording) meanwhile, and the
// head is left as it is, so the report stays until an operator acts.
func TestDeletedOrReplacedLogIsReported(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, logPath string)
		want   string
	}{
		{"deleted", func(t *testing.T, p string) { os.Remove(p) }, "deleted or replaced"},
		{"cut off", func(t *testing.T, p string) {
			raw, _ := os.ReadFile(p)
			lines := bytes.SplitAfter(raw, []byte("\n"))
			os.WriteFile(p, bytes.Join(lines[:2], nil), 0o600)
		}, "cut off"},
		{"replaced", func(t *testing.T, p string) {
			other := filepath.Join(t.TempDir(), "audit.log")
			s, err := OpenFile(other, nil) // another clock: other hashes
			if err != nil {
				t.Fatal(err)
			}
			l := NewLog(s, nil)
			for v := 1; v <= 4; v++ {
				mustRecord(t, l, Event{Type: Created, Version: v, Reason: "forged"})
			}
			s.Close()
			raw, _ := os.ReadFile(other)
			os.WriteFile(p, raw, 0o600)
		}, "replaced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logPath, headPath, evs := headDir(t)
			headBefore, _ := os.ReadFile(headPath)
			if h, err := ReadHead(headPath); err != nil || h == nil || h.Seq != 3 || h.Hash != evs[2].Hash {
				t.Fatalf("head = %+v, %v; want seq 3 %s", h, err, evs[2].Hash)
			}
			tt.tamper(t, logPath)

			s, err := OpenFileWithHead(logPath, headPath, nil)
			if err != nil {
				t.Fatalf("OpenFileWithHead after the log was %s: %v (keyd must still start)", tt.name, err)
			}
			defer s.Close()
			l := NewLog(s, nil)
			mustRecord(t, l, Event{Type: Created, Version: 9, Reason: "after"})
			p := strings.Join(l.Problems(), "\n")
			if !strings.Contains(p, "seq 3") || !strings.Contains(p, tt.want) {
				t.Errorf("Problems = %q, want the recorded head seq 3 and %q", p, tt.want)
			}
			if after, _ := os.ReadFile(headPath); !bytes.Equal(after, headBefore) {
				t.Errorf("head rewritten to %s after a mismatch; it must stay %s", after, headBefore)
			}
			h, _ := ReadHead(headPath)
			if _, err := CheckFile(logPath, nil, h); !errors.Is(err, ErrHeadMismatch) {
				t.Errorf("CheckFile with the head = %v, want ErrHeadMismatch", err)
			}
		})
	}
}

// TestHeadFollowsTheChain: the head advances with every event, a log from
// before head files gets one, and an intact log has no problems.
func TestHeadFollowsTheChain(t *testing.T) {
	logPath, headPath, _ := headDir(t)
	os.Remove(headPath) // a data dir from before head files
	s, err := OpenFileWithHead(logPath, headPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if h, _ := ReadHead(headPath); h == nil || h.Seq != 3 {
		t.Fatalf("head after open = %+v, want seq 3", h)
	}
	l := NewLog(s, nil)
	ev := mustRecord(t, l, Event{Type: Activated, Version: 3})
	if h, _ := ReadHead(headPath); h == nil || h.Seq != 4 || h.Hash != ev.Hash {
		t.Fatalf("head after an event = %+v, want seq 4 %s", h, ev.Hash)
	}
	if p := l.Problems(); len(p) != 0 {
		t.Errorf("Problems of an intact log = %q", p)
	}
	h, _ := ReadHead(headPath)
	sum, err := CheckFile(logPath, nil, h)
	if err != nil || sum.Records != 4 || sum.HeadSeq != 4 || sum.HeadHash != ev.Hash {
		t.Errorf("CheckFile = %+v, %v; want 4 records, head seq 4", sum, err)
	}
}
