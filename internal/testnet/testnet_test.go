//go:build linux

package testnet

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A cut makes connects hang (no refusal comes back) until it heals; the
// namespaces are gone once the test ends.
func TestCutAndHeal(t *testing.T) {
	var ns []string
	t.Run("net", func(t *testing.T) {
		n := New(t)
		srv := n.AddHost("srv")
		l, err := srv.Listen("tcp", srv.IP+":8080")
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
		go hs.Serve(l)
		defer hs.Close()
		get := func(timeout time.Duration) error {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+srv.IP+":8080/", nil)
			c := n.Client()
			defer c.CloseIdleConnections()
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		}
		if err := get(2 * time.Second); err != nil {
			t.Fatalf("before the cut: %v", err)
		}
		n.Cut(n.ctl, srv)
		began := time.Now()
		if err := get(300 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("through the cut: %v after %v; want a connect that hangs until the deadline", err, time.Since(began))
		}
		n.Heal()
		if err := get(2 * time.Second); err != nil {
			t.Errorf("after the heal: %v", err)
		}
		ns = []string{n.hub, n.ctl.NS, srv.NS}
	})
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, name := range ns {
		if strings.Contains(string(out), name) {
			t.Errorf("namespace %s left behind", name)
		}
	}
}
