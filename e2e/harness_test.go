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
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var keydBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keyd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	keydBin = filepath.Join(dir, "keyd")
	out, err := exec.Command("go", "build", "-o", keydBin, "../cmd/keyd").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build keyd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fastLifecycle is the second-scale setting of the lifecycle tests.
var fastLifecycle = []string{
	"--rotation-schedule", "@every 3s", "--propagation-delay", "2s",
	"--max-token-lifetime", "5s", "--clock-skew", "1s", "--jwks-max-age", "1s",
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// keyd is one running keyd process.
type keyd struct {
	URL  string
	cmd  *exec.Cmd
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startKeyd runs `keyd serve args...` with env added, waits for /readyz and
// stops the process (by its PID) when the test ends.
func startKeyd(t *testing.T, env []string, args ...string) *keyd {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(keydBin, append([]string{"serve", "--listen", addr}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	k := &keyd{URL: "http://" + addr, cmd: cmd, logs: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = k.logs, k.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("keyd %s log:\n%s", addr, tail(k.logs.String(), 40))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(k.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return k
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("keyd on %s not ready after 20s:\n%s", addr, tail(k.logs.String(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// call sends a JSON request and decodes a 200 answer into out.
func call(ctx context.Context, method, url, token string, body, out any) (int, error) {
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
	resp, err := http.DefaultClient.Do(req)
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
