package audit

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/fsutil"
)

// FileStore is the local-mode store: one JSON event per line in a file
// (<data-dir>/audit.log, mode 0600), appended and fsynced before Append
// returns. Every operation holds an flock on <path>.lock, so several
// processes on one data dir extend one chain.
//
// A torn last line (a crash mid-append, so never reported done) is moved to
// a side file <path>.torn-<unix seconds> and replaced, in one atomic rewrite
// of the log, by a torn_record event naming the side file. That happens
// whenever the store finds one: at open, or later when another process
// sharing the file crashed.
//
// A line in the middle that is not an event (garbage, an edit) is left in
// place, skipped and reported by Problems: the chain keeps growing from its
// last good event and every verification names the bad line.
//
// With a head file (OpenFileWithHead: <data-dir>/keys/audit-head.json, kept
// beside the keys) the store remembers the seq and hash of the newest event,
// so a log deleted, replaced or cut off is reported instead of silently
// restarting the chain. Once the log disagrees with the head, the head is
// left as it is (the evidence) until an operator restores the log or removes
// the head file.
type FileStore struct {
	path     string
	lockPath string
	headPath string // "" when the store keeps no head
	clock    clock.Clock

	mu       sync.Mutex // serializes this process's users; the flock serializes processes
	f        *os.File   // the log, opened O_APPEND
	size     int64      // bytes of f already parsed into events
	lines    int        // lines of f already parsed
	events   []Event
	bad      []string // lines skipped because they are not events
	head     *Head    // the head file as checkHead read it (nil: none); the flock keeps it current
	headBad  string   // how the log disagrees with the head file, or ""
	headErr  string   // why the head file cannot be read or written, or ""
	problems []string // the above, as of the last operation
}

// Head is the newest event of a chain, as the head file keeps it.
type Head struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

var _ Store = (*FileStore)(nil)

// OpenFile opens (creating it and its directory when missing) the log at
// path and repairs a torn last line. clk is the clock for torn_record
// events (nil means clock.Real).
func OpenFile(path string, clk clock.Clock) (*FileStore, error) {
	return OpenFileWithHead(path, "", clk)
}

// OpenFileWithHead is OpenFile with a head file at headPath (see FileStore).
// A head file missing while the log holds events is written (a data dir from
// before head files).
func OpenFileWithHead(path, headPath string, clk clock.Clock) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	s := &FileStore{path: path, lockPath: path + ".lock", headPath: headPath, clock: cmp.Or[clock.Clock](clk, clock.Real{})}
	if err := s.locked(func() error { return nil }); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the log file.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// Append writes ev as the next line and fsyncs the file. ev.Seq must follow
// the last seq in the file: ErrSeqTaken when that seq is already written.
func (s *FileStore) Append(ctx context.Context, ev Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := encodeLine(ev)
	if err != nil {
		return err
	}
	return s.locked(func() error {
		last := s.tail()
		if ev.Seq <= last.Seq {
			return ErrSeqTaken
		}
		if ev.Seq != last.Seq+1 {
			return fmt.Errorf("audit: seq %d does not follow the last seq %d", ev.Seq, last.Seq)
		}
		if want := linkHash(last); ev.PrevHash != want {
			return fmt.Errorf("audit: seq %d does not link to seq %d", ev.Seq, last.Seq)
		}
		if err := s.write(line); err != nil {
			return err
		}
		s.events = append(s.events, ev)
		return nil
	})
}

// Read returns the events with seq greater than since, in file order.
func (s *FileStore) Read(ctx context.Context, since int64) ([]Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Event
	err := s.locked(func() error {
		for _, ev := range s.events {
			if ev.Seq > since {
				out = append(out, ev)
			}
		}
		return nil
	})
	return out, err
}

// locked runs fn holding the process mutex and the flock, with the cache
// caught up with the file (and a torn last line repaired).
func (s *FileStore) locked(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lk, err := fsutil.LockFile(s.lockPath)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer lk.Unlock()
	if err := s.catchUp(); err != nil {
		return err
	}
	s.checkHead()
	err = fn()
	s.advanceHead()
	s.problems = s.problems[:0]
	s.problems = append(s.problems, s.bad...)
	for _, p := range []string{s.headBad, s.headErr} {
		if p != "" {
			s.problems = append(s.problems, p)
		}
	}
	return err
}

// Problems describes what is wrong with the log as of the last operation:
// lines that are not events, and a log that disagrees with the head file.
// The chain is not intact while there is any.
func (s *FileStore) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.problems)
}

// ReadHead reads a head file; nil, nil when there is none.
func ReadHead(path string) (*Head, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read head %s: %w", path, err)
	}
	var h Head
	if err := json.Unmarshal(raw, &h); err != nil || h.Seq < 1 || !isHash(h.Hash) {
		return nil, fmt.Errorf("audit: head file %s is corrupt", path)
	}
	return &h, nil
}

// CheckHead reports how events (a whole chain, in order) disagree with the
// head the key store recorded, or nil: the chain must hold the head's seq
// with the head's hash.
func CheckHead(events []Event, h Head) error {
	for _, ev := range events {
		if ev.Seq != h.Seq {
			continue
		}
		if ev.Hash == h.Hash {
			return nil
		}
		return fmt.Errorf("%w: the key store recorded seq %d with hash %s, the log has hash %s there: the log was replaced or rewritten", ErrHeadMismatch, h.Seq, h.Hash, ev.Hash)
	}
	if len(events) == 0 {
		return fmt.Errorf("%w: the key store recorded a chain up to seq %d (hash %s) but the log is empty or missing: it was deleted or replaced", ErrHeadMismatch, h.Seq, h.Hash)
	}
	last := events[len(events)-1].Seq
	return fmt.Errorf("%w: the key store recorded a chain up to seq %d (hash %s) but the log has no seq %d (it ends at seq %d): its tail was cut off or it was replaced", ErrHeadMismatch, h.Seq, h.Hash, h.Seq, last)
}

// checkHead compares the log with the head file; a mismatch stays reported
// (and the head untouched) until the two agree again.
func (s *FileStore) checkHead() {
	if s.headPath == "" {
		return
	}
	h, err := ReadHead(s.headPath)
	if err != nil {
		s.headErr = err.Error() + "; move it aside once examined"
		return
	}
	s.head, s.headErr, s.headBad = h, "", ""
	if h != nil {
		if err := CheckHead(s.events, *h); err != nil {
			s.headBad = s.path + ": " + err.Error()
		}
	}
}

// advanceHead records the newest event in the head file, unless the log
// disagrees with it. A failure is reported and retried next time; the event
// itself is durable already.
func (s *FileStore) advanceHead() {
	if s.headPath == "" || s.headBad != "" || len(s.events) == 0 {
		return
	}
	if s.headErr != "" {
		return // a corrupt head file is evidence too: never overwritten
	}
	tail := s.tail()
	if s.head != nil && s.head.Seq >= tail.Seq {
		return
	}
	h := Head{Seq: tail.Seq, Hash: tail.Hash}
	raw, _ := json.Marshal(h)
	if err := fsutil.WriteFileAtomic(s.headPath, raw, 0o600); err != nil {
		s.headErr = fmt.Sprintf("audit: cannot write head %s: %v", s.headPath, err)
		return
	}
	s.head, s.headErr = &h, ""
}

// catchUp opens the log when needed (again when another process replaced
// it), parses the lines appended since the last call and repairs a torn
// last line.
func (s *FileStore) catchUp() error {
	fi, err := os.Stat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s.create()
	case err != nil:
		return fmt.Errorf("audit: %w", err)
	}
	if err := s.reopen(fi); err != nil {
		return err
	}
	if fi.Size() == s.size {
		return nil
	}
	buf := make([]byte, fi.Size()-s.size)
	if _, err := s.f.ReadAt(buf, s.size); err != nil && err != io.EOF {
		return fmt.Errorf("audit: read %s: %w", s.path, err)
	}
	return s.parse(buf)
}

// reopen drops the open log when it is no longer the file at s.path (or
// it shrank), and opens that file afresh, forgetting what was parsed.
func (s *FileStore) reopen(fi os.FileInfo) error {
	if s.f != nil {
		cur, err := s.f.Stat()
		if err != nil || !os.SameFile(cur, fi) || fi.Size() < s.size {
			s.f.Close()
			s.f = nil
		}
	}
	if s.f != nil {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	s.f, s.size, s.events, s.lines, s.bad = f, 0, nil, 0, nil
	return nil
}

// parse takes in the lines of buf, read at s.size: events are appended,
// malformed lines kept and reported, a torn last line repaired.
func (s *FileStore) parse(buf []byte) error {
	for len(buf) > 0 {
		line, rest, found := bytes.Cut(buf, []byte("\n"))
		if !found {
			return s.repair(buf) // bytes after the last newline: torn
		}
		ev, err := decodeEvent(line)
		if err != nil {
			if len(rest) == 0 && !validJSON(line) {
				return s.repair(buf) // last line is garbage: torn
			}
			// Left in place (the evidence), skipped, reported.
			s.bad = append(s.bad, fmt.Sprintf("%s: %s line %d: %v; the line is kept and skipped, the chain is broken there", ErrMalformed, s.path, s.lines+1, err))
		} else {
			s.events = append(s.events, ev)
		}
		s.lines++
		s.size += int64(len(line)) + 1
		buf = rest
	}
	return nil
}

func validJSON(b []byte) bool {
	_, err := canonicalJSON(b, "")
	return err == nil
}

// create makes an empty log and makes its name durable.
func (s *FileStore) create() error {
	if s.f != nil {
		s.f.Close()
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	s.f, s.size, s.events, s.lines, s.bad = f, 0, nil, 0, nil
	if err := fsutil.SyncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// write appends line and fsyncs; on failure it cuts the file back to the
// last whole line, so a live process never leaves a torn line behind.
func (s *FileStore) write(line []byte) error {
	if _, err := s.f.Write(line); err != nil {
		_ = s.f.Truncate(s.size)
		return fmt.Errorf("audit: append to %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		_ = s.f.Truncate(s.size)
		return fmt.Errorf("audit: fsync %s: %w", s.path, err)
	}
	s.size += int64(len(line))
	s.lines++
	return nil
}

// repair moves torn, the bytes from s.size to the end of the log, into a
// side file, and atomically replaces the log by its good prefix followed by
// a torn_record event naming the side file. A crash at any point leaves
// either the torn log (repaired again next time) or the repaired one.
func (s *FileStore) repair(torn []byte) error {
	now := s.clock.Now().UTC()
	side, err := writeSideFile(s.path, now, torn)
	if err != nil {
		return err
	}
	last := s.tail()
	ev := Event{
		Seq:      last.Seq + 1,
		Time:     now.Format(TimeFormat),
		Type:     TornRecord,
		Actor:    "keyd",
		Reason:   fmt.Sprintf("a torn last line (%d bytes, a write interrupted by a crash) was moved to %s", len(torn), filepath.Base(side)),
		PrevHash: linkHash(last),
	}
	if ev.Hash, err = Hash(ev); err != nil {
		return err
	}
	line, err := encodeLine(ev)
	if err != nil {
		return err
	}
	good := make([]byte, s.size, s.size+int64(len(line)))
	if _, err := s.f.ReadAt(good, 0); err != nil && err != io.EOF {
		return fmt.Errorf("audit: read %s: %w", s.path, err)
	}
	data := append(good, line...)
	if err := fsutil.WriteFileAtomic(s.path, data, 0o600); err != nil {
		return fmt.Errorf("audit: repair %s: %w", s.path, err)
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	s.f.Close()
	s.f, s.size = f, int64(len(data))
	s.lines++
	s.events = append(s.events, ev)
	return nil
}

// writeSideFile stores torn durably in a new file next to the log (its
// directory entry is made durable by the rewrite of the log that follows).
func writeSideFile(path string, now time.Time, torn []byte) (string, error) {
	base := fmt.Sprintf("%s.torn-%d", path, now.Unix())
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) && i < 100 {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("audit: create side file: %w", err)
		}
		_, werr := f.Write(torn)
		if werr == nil {
			werr = f.Sync()
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return "", fmt.Errorf("audit: write side file %s: %w", name, werr)
		}
		return name, nil
	}
}

func (s *FileStore) tail() Event {
	if len(s.events) == 0 {
		return Event{}
	}
	return s.events[len(s.events)-1]
}

// linkHash is the prev_hash of the event that follows last (Seq 0: none).
func linkHash(last Event) string {
	if last.Seq == 0 {
		return ZeroHash
	}
	return last.Hash
}
