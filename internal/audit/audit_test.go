package audit

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
)

// fixedClock returns a clock stuck at a known instant.
func fixedClock() clock.Clock {
	return clock.NewFake(time.Date(2025, 3, 1, 12, 30, 45, 123456789, time.FixedZone("CET", 3600)))
}

// newFileLog opens a file store at dir/audit.log and a Log over it.
func newFileLog(t *testing.T, path string) (*Log, *FileStore) {
	t.Helper()
	s, err := OpenFile(path, fixedClock())
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return NewLog(s, fixedClock()), s
}

func mustRecord(t *testing.T, l *Log, e Event) Event {
	t.Helper()
	ev, err := l.Record(context.Background(), e)
	if err != nil {
		t.Fatalf("Record(%s v%d): %v", e.Type, e.Version, err)
	}
	return ev
}

// pythonHashes computes, with Python's standard library alone, the hash of
// each JSON line of data: SHA-256 over json.dumps(sort_keys, compact,
// ensure_ascii=False) of the object without "hash", which equals RFC 8785
// for objects with integer numbers and string member names in ASCII.
func pythonHashes(t *testing.T, data []byte) []string {
	t.Helper()
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("no /usr/bin/python3 for the independent hash computation")
	}
	const script = `
import hashlib, json, sys
for line in sys.stdin.buffer:
    obj = json.loads(line)
    obj.pop("hash")
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    print(hashlib.sha256(canon.encode("utf-8")).hexdigest())
`
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v: %s", err, stderr.String())
	}
	return strings.Fields(string(out))
}

func TestHashMatchesPython(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := newFileLog(t, path)
	inputs := []Event{
		{Type: Bootstrap, KID: "k1", Version: 1, Actor: "scheduler", Reason: "first key"},
		{Type: Created, KID: "Xy-_09", Version: 2, Actor: "admin", Reason: `quote " backslash \ slash /`},
		{Type: Activated, KID: "k2", Version: 2, Actor: "é漢字 ñ", Reason: "tab\there\nnewline \u0001 \u001f \u007f"},
		{Type: Emergency, KID: "k3", Version: 3, Actor: "vault:entity=abc accessor=def", Reason: "<b>&amp;</b> \u2028 \u2029 😀"},
		{Type: RotationFailed, Version: 4, Actor: "bad utf-8 \xff\xfe", Reason: ""},
		{Type: Destroyed, KID: "k1", Version: 1, Actor: "", Reason: "retires_at passed"},
	}
	var got []Event
	for _, e := range inputs {
		got = append(got, mustRecord(t, l, e))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	py := pythonHashes(t, data)
	if len(py) != len(got) {
		t.Fatalf("python hashed %d lines, want %d", len(py), len(got))
	}
	for i, ev := range got {
		if py[i] != ev.Hash {
			t.Errorf("seq %d: python hash %s, keyd hash %s", ev.Seq, py[i], ev.Hash)
		}
		if h, err := Hash(ev); err != nil || h != ev.Hash {
			t.Errorf("seq %d: Hash() = %s, %v; want %s", ev.Seq, h, err, ev.Hash)
		}
	}
	if err := VerifyFile(path, nil); err != nil {
		t.Errorf("VerifyFile: %v", err)
	}
}

func TestFirstPrevHashIsZeros(t *testing.T) {
	l, _ := newFileLog(t, filepath.Join(t.TempDir(), "audit.log"))
	first := mustRecord(t, l, Event{Type: Bootstrap, Version: 1, KID: "k1", Actor: "scheduler"})
	second := mustRecord(t, l, Event{Type: Created, Version: 2, KID: "k2", Actor: "scheduler"})
	if first.Seq != 1 || first.PrevHash != strings.Repeat("0", 64) {
		t.Errorf("first event: seq %d prev_hash %s, want seq 1 and 64 zeros", first.Seq, first.PrevHash)
	}
	if second.Seq != 2 || second.PrevHash != first.Hash {
		t.Errorf("second event: seq %d prev_hash %s, want seq 2 and %s", second.Seq, second.PrevHash, first.Hash)
	}
	if first.Time != "2025-03-01T11:30:45Z" {
		t.Errorf("time %q, want the clock's time in UTC whole seconds", first.Time)
	}
}

func TestEventJSONMembers(t *testing.T) {
	line, err := encodeLine(Event{Seq: 1, Time: "2025-03-01T11:30:45Z", Type: Created, KID: "k", Version: 2,
		Actor: "a", Reason: "<r>", PrevHash: ZeroHash, Hash: ZeroHash})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":1,"time":"2025-03-01T11:30:45Z","type":"created","kid":"k","version":2,"actor":"a","reason":"<r>","prev_hash":"` +
		ZeroHash + `","hash":"` + ZeroHash + "\"}\n"
	if string(line) != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}
}

func TestDecodeEventStrict(t *testing.T) {
	good := `{"seq":1,"time":"2025-03-01T11:30:45Z","type":"created","kid":"k","version":2,"actor":"a","reason":"r","prev_hash":"` +
		ZeroHash + `","hash":"` + ZeroHash + `"}`
	if _, err := decodeEvent([]byte(good)); err != nil {
		t.Fatalf("good event: %v", err)
	}
	tests := []struct{ name, from, to string }{
		{"unknown member", `"seq":1,`, `"seq":1,"extra":true,`},
		{"missing member", `"reason":"r",`, ``},
		{"null member", `"reason":"r"`, `"reason":null`},
		{"duplicate member", `"seq":1,`, `"seq":1,"seq":1,`},
		{"float seq", `"seq":1,`, `"seq":1.5,`},
		{"string seq", `"seq":1,`, `"seq":"1",`},
		{"unknown type", `"created"`, `"revoked"`},
		{"local time", `11:30:45Z`, `12:30:45+01:00`},
		{"short hash", `"hash":"0000`, `"hash":"00`},
		{"upper-case hash", `"hash":"0000`, `"hash":"AB00`},
		{"zero seq", `"seq":1,`, `"seq":0,`},
		{"not an object", good, `[1,2]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := strings.Replace(good, tc.from, tc.to, 1)
			if raw == good {
				t.Fatal("test case changed nothing")
			}
			if _, err := decodeEvent([]byte(raw)); err == nil {
				t.Errorf("decodeEvent(%s) accepted it", raw)
			}
		})
	}
}
