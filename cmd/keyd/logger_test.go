package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogDurationsAsText: keyd's logger writes a time.Duration as "1h0m0s",
// also inside a group, never as nanoseconds.
func TestLogDurationsAsText(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf).Info("vault approle login", "ttl", time.Hour, slog.Group("failing", "retry_in", 1500*time.Millisecond), "n", 3)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if got["ttl"] != "1h0m0s" || got["failing"].(map[string]any)["retry_in"] != "1.5s" || got["n"] != 3.0 {
		t.Errorf("logged %s, want ttl 1h0m0s, failing.retry_in 1.5s, n 3", buf.String())
	}
}

// TestStartupLineShowsSettings: the "keyd listening" line of a real keyd
// names its lifecycle settings, durations written as durations.
func TestStartupLineShowsSettings(t *testing.T) {
	p := startKeyd(t, t.TempDir(), nil, "--propagation-delay", "36h", "--clock-skew", "90s")
	var line map[string]any
	// keyd may answer /readyz a moment before it writes the line.
	for deadline := time.Now().Add(10 * time.Second); line == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if strings.Contains(l, `"keyd listening"`) {
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatalf("%v: %s", err, l)
				}
			}
		}
	}
	want := map[string]any{
		"propagation_delay": "36h0m0s", "clock_skew": "1m30s", "max_token_lifetime": "1h0m0s",
		"jwks_max_age": "5m0s", "rotation_schedule": "0 0 1 * *", "algorithm": "RS512",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("keyd listening: %s = %v, want %v (line %v)", k, line[k], v, line)
		}
	}
}

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
		warnReadableSecretID(path, newLogger(&buf))
		lines := strings.Count(buf.String(), "\n")
		if tt.warn && (lines != 1 || !strings.Contains(buf.String(), path) || !strings.Contains(buf.String(), `"fix":"chmod 600 `+path)) ||
			!tt.warn && lines != 0 {
			t.Errorf("mode %04o: logged %q, want a warning: %v", tt.mode, buf.String(), tt.warn)
		}
	}
	var buf bytes.Buffer
	warnReadableSecretID(filepath.Join(t.TempDir(), "missing"), newLogger(&buf))
	if buf.Len() != 0 {
		t.Errorf("a missing file logged %q (the login reports it)", buf.String())
	}
}
