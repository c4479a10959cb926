package vaulttest

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestStartAndToken(t *testing.T) {
	srv := StartShared(t)
	if again := StartShared(t); again != srv {
		t.Fatal("StartShared started a second server")
	}
	ctx := context.Background()
	root := srv.Client(t, srv.RootToken)
	if _, err := root.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		t.Fatalf("root token: %v", err)
	}

	tok := srv.Token(t)
	self, err := srv.Client(t, tok).Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := self.TokenPolicies()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"default"}) {
		t.Errorf("Token() policies = %v, want [default] (never the parent's root)", got)
	}
}

func TestStartStop(t *testing.T) {
	srv := Start(t)
	resp, err := http.Get(srv.Addr + "/v1/sys/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.Stop()
	srv.Stop() // idempotent
	select {
	case <-srv.done:
	default:
		t.Fatal("process still running after Stop")
	}
	if _, err := http.Get(srv.Addr + "/v1/sys/health"); err == nil {
		t.Fatal("vault still answers after Stop")
	}
}

func TestProxy(t *testing.T) {
	srv := StartShared(t)
	p := NewProxy(t, srv.Addr)
	client := &http.Client{Timeout: 500 * time.Millisecond}
	health := func() error {
		resp, err := client.Get(p.Addr() + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := health(); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	p.Cut()
	start := time.Now()
	if err := health(); err == nil {
		t.Fatal("cut proxy forwarded a request")
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("cut proxy failed after %s, want at once", d)
	}

	p.Stall()
	start = time.Now()
	if err := health(); err == nil {
		t.Fatal("stalled proxy forwarded a request")
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("stalled proxy failed after %s, want a timeout", d)
	}

	p.Restore()
	if err := health(); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}

// recorder stands in for a test to see whether a missing binary skips or fails.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()               {}
func (r *recorder) Skip(args ...any)      { r.skipped = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Fatal(args ...any)     { r.failed = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Cleanup(func())        {}
func (r *recorder) Name() string          { return "recorder" }
func (r *recorder) Fatalf(string, ...any) { panic("unexpected Fatalf") }

func TestMissingBinary(t *testing.T) {
	t.Setenv("KEYD_VAULT_BIN", filepath.Join(t.TempDir(), "no-vault"))
	run := func() *recorder {
		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() { defer close(done); Start(r) }()
		<-done
		return r
	}

	t.Setenv("CI", "")
	if r := run(); !strings.Contains(r.skipped, "make vault") || r.failed != "" {
		t.Errorf("outside CI: skipped %q, failed %q; want a skip naming make vault", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	if r := run(); !strings.Contains(r.failed, "make vault") || r.skipped != "" {
		t.Errorf("in CI: skipped %q, failed %q; want a failure naming make vault", r.skipped, r.failed)
	}
}
