// Package e2e runs real keyd processes on wall-clock time with second-scale
// lifecycle settings. It is the one kind of test that uses real time: run it
// without -race (make e2e).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/testkeyd"
)

var keydBin string

func TestMain(m *testing.M) { testkeyd.Main(m, &keydBin) }

// fastLifecycle is the second-scale setting of the lifecycle tests.
var fastLifecycle = []string{
	"--rotation-schedule", "@every 3s", "--propagation-delay", "2s",
	"--max-token-lifetime", "5s", "--clock-skew", "1s", "--jwks-max-age", "1s",
}

// startKeyd runs `keyd serve args...` until the test ends.
func startKeyd(t *testing.T, env []string, args ...string) *testkeyd.Keyd {
	t.Helper()
	return testkeyd.Start(t, keydBin, env, args...)
}

// call sends a JSON request and decodes a 200 answer into out.
func call(ctx context.Context, method, url, token string, body, out any) (int, error) {
	return callVia(ctx, http.DefaultClient, method, url, token, body, out)
}

// callVia is call through client.
func callVia(ctx context.Context, client *http.Client, method, url, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	if out != nil {
		return 200, json.Unmarshal(raw, out)
	}
	return 200, nil
}

// waitUntil polls cond (every 50ms) until it holds, and fails the test with
// what when it does not within timeout: tests wait for a condition, never
// for a fixed time.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
