package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
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
