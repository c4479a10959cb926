// Package testkeyd builds keyd and runs it as a real process in tests: a free
// loopback port, readiness on /readyz, and a stop by PID when the test ends.
package testkeyd

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Build compiles ./cmd/keyd into dir and returns the binary's path.
func Build(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "keyd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/keyd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build keyd: %v\n%s", err, out)
	}
	return bin, nil
}

// Main is a TestMain for packages that run keyd processes: it builds keyd
// once into a temporary dir, stores its path in *bin, runs the tests and
// removes the dir.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "keyd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *bin, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Keyd is one running `keyd serve`.
type Keyd struct {
	URL  string
	Cmd  *exec.Cmd
	logs *logBuffer
}

// Logs returns what the process wrote so far.
func (k *Keyd) Logs() string { return k.logs.String() }

// Start runs `bin serve --listen <free port> args...` with env added to the
// environment, waits until /readyz answers 200, and stops it at cleanup.
func Start(t testing.TB, bin string, env []string, args ...string) *Keyd {
	t.Helper()
	return StartWith(t, Options{}, bin, env, args...)
}

// Options places a keyd process.
type Options struct {
	// Listen is the address keyd listens on (default: a free loopback port).
	Listen string
	// Wrap, when set, returns the command line that runs argv (e.g. in a
	// network namespace); it must exec argv, so that the process is keyd's.
	Wrap func(argv []string) []string
	// Client reaches keyd (default http.DefaultClient).
	Client *http.Client
}

// StartWith is Start with keyd placed as opts says.
func StartWith(t testing.TB, opts Options, bin string, env []string, args ...string) *Keyd {
	t.Helper()
	addr := opts.Listen
	if addr == "" {
		addr = FreeAddr(t)
	}
	client := opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	argv := append([]string{bin, "serve", "--listen", addr}, args...)
	if opts.Wrap != nil {
		argv = opts.Wrap(argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	k := &Keyd{URL: "http://" + addr, Cmd: cmd, logs: &logBuffer{}}
	cmd.Stdout, cmd.Stderr = k.logs, k.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.Stop()
		if t.Failed() {
			t.Logf("keyd %s log (tail):\n%s", addr, tail(k.Logs(), 40))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(k.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return k
			}
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("keyd on %s not ready:\n%s", addr, tail(k.Logs(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGINT and waits (SIGKILL after 5s). Safe to call twice.
func (k *Keyd) Stop() {
	if k.Cmd.Process == nil || k.Cmd.ProcessState != nil {
		return
	}
	k.Cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { k.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		k.Cmd.Process.Kill()
		<-done
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
