package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

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
type FileStore struct {
	path     string
	lockPath string
	now      func() time.Time

	mu     sync.Mutex // serializes this process's users; the flock serializes processes
	f      *os.File   // the log, opened O_APPEND
	size   int64      // bytes of f already parsed into events
	events []Event
}

var _ Store = (*FileStore)(nil)

// OpenFile opens (creating it and its directory when missing) the log at
// path and repairs a torn last line. now is the clock for torn_record
// events (nil means time.Now).
func OpenFile(path string, now func() time.Time) (*FileStore, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	s := &FileStore{path: path, lockPath: path + ".lock", now: now}
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
	return fn()
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
	if s.f != nil {
		cur, err := s.f.Stat()
		if err != nil || !os.SameFile(cur, fi) || fi.Size() < s.size {
			s.f.Close()
			s.f = nil
		}
	}
	if s.f == nil {
		f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		s.f, s.size, s.events = f, 0, nil
	}
	if fi.Size() == s.size {
		return nil
	}
	buf := make([]byte, fi.Size()-s.size)
	if _, err := s.f.ReadAt(buf, s.size); err != nil && err != io.EOF {
		return fmt.Errorf("audit: read %s: %w", s.path, err)
	}
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
			return fmt.Errorf("%w: %s line %d: %v", ErrMalformed, s.path, len(s.events)+1, err)
		}
		s.events = append(s.events, ev)
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
	s.f, s.size, s.events = f, 0, nil
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
	return nil
}

// repair moves torn, the bytes from s.size to the end of the log, into a
// side file, and atomically replaces the log by its good prefix followed by
// a torn_record event naming the side file. A crash at any point leaves
// either the torn log (repaired again next time) or the repaired one.
func (s *FileStore) repair(torn []byte) error {
	now := s.now().UTC()
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
