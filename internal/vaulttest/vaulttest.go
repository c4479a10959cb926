// Package vaulttest starts real Vault dev servers (bin/vault, built by
// `make vault`) for tests, and a loopback TCP proxy to simulate Vault outages.
//
// A test binary either starts its own server per test with Start, or shares
// one with StartShared, which needs Main in the package's TestMain:
//
//	func TestMain(m *testing.M) { vaulttest.Main(m) }
//
// When bin/vault is missing, tests are skipped with a message saying to run
// `make vault`, except when the CI environment variable is set: then they fail.
package vaulttest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Server is a running Vault dev server. Everything it holds lives in memory
// and is lost when it stops.
type Server struct {
	// Addr is the server's URL, http://127.0.0.1:<port>.
	Addr string
	// RootToken is the dev server's root token (random per server).
	RootToken string
	// CACert is, for a server started with StartTLS, the file holding the
	// CA of its certificate ("" for plain HTTP).
	CACert string

	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	logDir  string
	logFile string
	stop    sync.Once
}

// errNoBinary means bin/vault (or $KEYD_VAULT_BIN) does not exist.
type errNoBinary struct{ path string }

func (e errNoBinary) Error() string {
	return fmt.Sprintf("vault binary not found at %s: run `make vault` to build it (or set KEYD_VAULT_BIN)", e.path)
}

// Start starts a Vault dev server for this test alone and stops it (kills
// the process and waits for it) when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if err != nil {
		failOrSkip(t, err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartTLS starts, for this test alone, a Vault dev server that listens
// with TLS (-dev-tls: a certificate for 127.0.0.1 from a CA in CACert),
// where Vault offers HTTP/2. Addr is https://127.0.0.1:<port>.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	bin, err := existingBinary()
	if err != nil {
		failOrSkip(t, err)
	}
	var s *Server
	for range 4 { // a port can be taken between choosing it and starting Vault
		if s, err = startOnce(bin, true); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// StartShared returns the one Vault dev server of this test binary, starting
// it on first use (each start costs about a second). It is stopped by Main;
// without Main in TestMain the process still dies with the test binary on
// Linux, but call Main. Tests sharing a server must use their own mount, key
// and KV names (see UniqueName) and must not run in parallel when they write
// the keyd policies, whose names are global.
func StartShared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = start() })
	if shared.err != nil {
		failOrSkip(t, shared.err)
	}
	return shared.srv
}

// Main runs the tests and then stops the shared server, if one was started.
// Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	os.Exit(code)
}

func failOrSkip(t testing.TB, err error) {
	t.Helper()
	var nb errNoBinary
	if errors.As(err, &nb) && os.Getenv("CI") == "" {
		t.Skip(err.Error())
	}
	t.Fatal(err.Error())
}

// Binary returns the path of the Vault binary the tests start:
// $KEYD_VAULT_BIN, else bin/vault at the root of the module.
func Binary() (string, error) {
	if p := os.Getenv("KEYD_VAULT_BIN"); p != "" {
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin", "vault"), nil
}

// repoRoot walks up from the working directory to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("vaulttest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vaulttest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// existingBinary is Binary, or errNoBinary when it does not exist.
func existingBinary() (string, error) {
	bin, err := Binary()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err != nil {
		return "", errNoBinary{path: bin}
	}
	return bin, nil
}

func start() (*Server, error) {
	bin, err := existingBinary()
	if err != nil {
		return nil, err
	}
	// The dev server also listens on port+1 for cluster traffic, so a port
	// can be taken between choosing it and starting Vault: try a few.
	var lastErr error
	for range 4 {
		s, err := startOnce(bin, false)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startOnce(bin string, withTLS bool) (*Server, error) {
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}
	logDir, err := os.MkdirTemp("", "vaulttest-")
	if err != nil {
		return nil, fmt.Errorf("vaulttest: %w", err)
	}
	logFile := filepath.Join(logDir, "vault.log")
	out, err := os.Create(logFile)
	if err != nil {
		os.RemoveAll(logDir)
		return nil, fmt.Errorf("vaulttest: %w", err)
	}
	defer out.Close() // the child keeps its own descriptor

	listen := "127.0.0.1:" + strconv.Itoa(port)
	s := &Server{
		Addr:      "http://" + listen,
		RootToken: "root-" + randomHex(12),
		done:      make(chan struct{}),
		logDir:    logDir,
		logFile:   logFile,
	}
	args := []string{"server", "-dev", "-dev-root-token-id=" + s.RootToken,
		"-dev-listen-address=" + listen, "-dev-no-store-token"}
	if withTLS {
		s.Addr = "https://" + listen
		s.CACert = filepath.Join(logDir, "vault-ca.pem")
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+logDir)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = cleanEnv()
	s.cmd.Dir = logDir
	s.cmd.Stdout = out
	s.cmd.Stderr = out
	if err := startLocked(s.cmd, s.done); err != nil {
		os.RemoveAll(logDir)
		return nil, fmt.Errorf("vaulttest: start %s: %w", bin, err)
	}
	if err := s.waitHealthy(30 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitHealthy polls sys/health until Vault answers 200 (initialized,
// unsealed, active), the process exits or the timeout passes.
func (s *Server) waitHealthy(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("vaulttest: vault exited during start:\n%s", s.logTail())
		default:
		}
		if s.CACert != "" && client.Transport == nil {
			pem, err := os.ReadFile(s.CACert) // written by Vault as it starts
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) { // not all written yet
				time.Sleep(50 * time.Millisecond)
				continue
			}
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		}
		resp, err := client.Get(s.Addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("vaulttest: vault not healthy after %s:\n%s", timeout, s.logTail())
}

func (s *Server) logTail() string { return tail(s.logFile, 4000) }

// startLocked starts cmd with the parent-death signal set, and waits for it
// in the background, closing done once it has exited. Start and wait run in
// one goroutine locked to its OS thread, so that the parent-death signal
// (Linux) fires only when the test binary exits, not when the Go runtime
// retires the thread that forked Vault.
func startLocked(cmd *exec.Cmd, done chan struct{}) error {
	setDeathSignal(cmd)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	return <-started
}

// tail is the last n bytes of file, trimmed.
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// Stop kills the server's process and waits for it to exit. It is safe to
// call more than once.
func (s *Server) Stop() {
	s.stop.Do(func() {
		if s.cmd.Process != nil {
			_ = s.cmd.Process.Kill()
		}
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
		}
		os.RemoveAll(s.logDir)
	})
}

// Client returns a new API client for the server that uses token alone. It
// ignores VAULT_TOKEN and VAULT_ADDR from the environment.
func (s *Server) Client(t testing.TB, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	if s.CACert != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: s.CACert}); err != nil {
			t.Fatalf("vaulttest: client TLS: %v", err)
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("vaulttest: client: %v", err)
	}
	c.SetToken(token)
	return c
}

// Token creates a token (TTL 1h) carrying the given ACL policies plus Vault's
// default policy, as any token created without no_default_policy does. The
// default policy grants lookup-self, renew-self and capabilities-self, which
// keyd relies on to tell an unknown token from one without the role. With
// no policies the token carries the default policy alone: a token of "some
// other service" (an IDA), never the root policy of its parent.
func (s *Server) Token(t testing.TB, policies ...string) string {
	t.Helper()
	return createToken(t, s.Client(t, s.RootToken), policies)
}

// createToken creates, with root's token, a token as Server.Token does.
func createToken(t testing.TB, root *api.Client, policies []string) string {
	t.Helper()
	if len(policies) == 0 {
		policies = []string{"default"}
	}
	sec, err := root.Auth().Token().CreateWithContext(context.Background(), &api.TokenCreateRequest{
		Policies: policies,
		TTL:      "1h",
	})
	if err != nil {
		t.Fatalf("vaulttest: create token with %v: %v", policies, err)
	}
	if sec == nil || sec.Auth == nil {
		t.Fatalf("vaulttest: create token with %v: empty answer", policies)
	}
	return sec.Auth.ClientToken
}

// UniqueName returns prefix followed by a random suffix: a mount, key or KV
// name that no other test on a shared server uses.
func UniqueName(prefix string) string {
	return prefix + "-" + randomHex(4)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}

// freePortPair returns a loopback port p such that p and p+1 (the dev
// server's cluster port) were both free a moment ago.
func freePortPair() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("vaulttest: find a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		next, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		ln.Close()
		if err != nil {
			continue
		}
		next.Close()
		return port, nil
	}
	return 0, errors.New("vaulttest: no two adjacent free loopback ports")
}

// cleanEnv is the test's environment without VAULT_* variables, so the
// developer's own Vault settings never reach the dev server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return env
}
