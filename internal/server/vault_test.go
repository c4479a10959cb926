package server

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// jsonLogger writes JSON lines, as keyd serve's logger does.
func jsonLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// TestReadableSecretIDFileWarned: an AppRole secret-ID file its group or
// others can read is one warning naming the file and the fix; a 0600 one
// (or 0400) none.
func TestReadableSecretIDFileWarned(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		warn bool
	}{{0o644, true}, {0o640, true}, {0o604, true}, {0o600, false}, {0o400, false}} {
		path := filepath.Join(t.TempDir(), "secret-id")
		if err := os.WriteFile(path, []byte("s\n"), tt.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tt.mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		var buf bytes.Buffer
		warnReadableSecretID(path, jsonLogger(&buf))
		lines := strings.Count(buf.String(), "\n")
		if tt.warn && (lines != 1 || !strings.Contains(buf.String(), path) || !strings.Contains(buf.String(), `"fix":"chmod 600 `+path)) ||
			!tt.warn && lines != 0 {
			t.Errorf("mode %04o: logged %q, want a warning: %v", tt.mode, buf.String(), tt.warn)
		}
	}
	var buf bytes.Buffer
	warnReadableSecretID(filepath.Join(t.TempDir(), "missing"), jsonLogger(&buf))
	if buf.Len() != 0 {
		t.Errorf("a missing file logged %q (the login reports it)", buf.String())
	}
}
