package tools

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/testkeyd"
)

// readmeCommands returns the shell lines of README.md's indented code
// blocks (fenced blocks are Go or other code, not commands), in order.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	fenced, inHeredoc := false, false
	for _, l := range strings.Split(string(raw), "\n") {
		switch {
		case strings.HasPrefix(l, "```"):
			fenced = !fenced
		case fenced || !strings.HasPrefix(l, "    "):
		case inHeredoc:
			inHeredoc = strings.TrimSpace(l) != "EOF"
		default:
			cmd := strings.TrimSpace(l)
			if i := strings.Index(cmd, "  #"); i >= 0 {
				cmd = strings.TrimSpace(cmd[:i])
			}
			inHeredoc = strings.Contains(cmd, "<<'EOF'")
			lines = append(lines, cmd)
		}
	}
	return lines
}

// TestReadmeTourPastes checks what makes README's commands work pasted in
// order in a fresh clone (a paste-run of the tour is in the report of the
// change that added this test): keyd is run as bin/keyd after a build, the
// PyJWT snippet runs the python that has Debian's python3-jwt, request
// bodies say they are JSON, and the local keyd is stopped before the Vault
// one starts on the same port.
func TestReadmeTourPastes(t *testing.T) {
	lines := readmeCommands(t)
	bareKeyd := regexp.MustCompile(`(^|[|;&(]\s*|=\S*\s+)keyd\s`)
	built := false
	servers, stopped := 0, true
	for _, l := range lines {
		if strings.HasPrefix(l, "make build") || strings.Contains(l, "go build -o bin/keyd") {
			built = true
		}
		if bareKeyd.MatchString(l) {
			t.Errorf("README runs a bare keyd, which is not on PATH in a fresh clone: %s", l)
		}
		if strings.Contains(l, "bin/keyd") && !built && !strings.HasPrefix(l, "make build &&") {
			t.Errorf("README runs bin/keyd before building it: %s", l)
		}
		if strings.Contains(l, "python3 -") && !strings.Contains(l, "/usr/bin/python3") {
			t.Errorf("README runs the first python3 on PATH, which may lack PyJWT: %s", l)
		}
		if strings.HasPrefix(l, "curl") && strings.Contains(l, " -d ") && !strings.Contains(l, "Content-Type: application/json") {
			t.Errorf("README posts a body without Content-Type: application/json: %s", l)
		}
		if strings.Contains(l, "bin/keyd serve") && strings.HasSuffix(strings.Fields(l)[len(strings.Fields(l))-1], "&") {
			if !stopped {
				t.Errorf("README starts a second keyd while the first still holds the port: %s", l)
			}
			servers, stopped = servers+1, false
		}
		if strings.HasPrefix(l, "kill $KEYD_PID") {
			stopped = true
		}
		if strings.HasPrefix(l, "bin/keyd healthcheck") &&
			(!strings.Contains(l, "--pid $KEYD_PID") || !strings.Contains(l, "--wait") || !strings.Contains(l, "|| cat keyd")) {
			t.Errorf("README waits for keyd without --pid $KEYD_PID --wait and showing its log when it exits: %s", l)
		}
	}
	if servers < 2 {
		t.Errorf("README starts %d keyd servers in the background, want the local and the Vault one", servers)
	}
}

// tourStart returns the README tour's lines that start the local keyd and
// wait for it: from its `bin/keyd serve ... &` to the first line after it
// that runs `bin/keyd healthcheck`.
func tourStart(t *testing.T) []string {
	t.Helper()
	lines := readmeCommands(t)
	for i, l := range lines {
		if !strings.HasPrefix(l, "bin/keyd serve") {
			continue
		}
		for j := i + 1; j < len(lines); j++ {
			if strings.Contains(lines[j], "bin/keyd healthcheck") {
				return lines[i : j+1]
			}
		}
	}
	t.Fatal("README has no `bin/keyd serve ... &` followed by a `bin/keyd healthcheck` wait")
	return nil
}

// TestReadmeTourWaitStops runs the tour's start of keyd verbatim (port
// 8080, as pasted) in a network namespace of its own: it must stop and show
// the log when keyd cannot start because the port is held (by some listener,
// or by another keyd already answering /readyz), and must not take the other
// keyd for the one it started; with the port free it waits for keyd.
func TestReadmeTourWaitStops(t *testing.T) {
	if err := exec.Command("unshare", "-rn", "true").Run(); err != nil {
		t.Skipf("needs a network namespace of its own (unshare -rn): %v", err)
	}
	bin, err := testkeyd.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Join(tourStart(t), "\n")
	for _, tt := range []struct {
		name, before string
		ready        bool   // the tour's keyd must become ready
		want         string // in the output: the log's reason, healthcheck's line
	}{
		{name: "port free", ready: true},
		{
			name: "port held by another listener",
			before: `/usr/bin/python3 -c 'import socket,time; s=socket.socket(); s.bind(("127.0.0.1",8080)); s.listen(); open("held","w").close(); time.sleep(60)' &
until [ -e held ]; do sleep 0.05; done`,
			want: "address already in use",
		},
		{
			name: "another keyd already there",
			before: `bin/keyd serve --data-dir other-keyd 2> other.log &
bin/keyd healthcheck --wait 30s || { cat other.log; exit 3; }`,
			want: "address already in use",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(bin, filepath.Join(dir, "bin", "keyd")); err != nil {
				t.Fatal(err)
			}
			// The tour's lines, then whether its keyd is the one that
			// answers (its pid in /readyz) and still runs.
			script := "ip link set lo up\n" + tt.before + "\n" + start + `
if kill -0 $KEYD_PID 2>/dev/null && curl -fs http://127.0.0.1:8080/readyz | grep -q "\"pid\":$KEYD_PID[,}]"; then echo TOUR-KEYD-READY; fi
kill $(jobs -p) 2>/dev/null; wait
`
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "unshare", "-rn", "bash", "-c", script)
			cmd.Dir = dir
			// On a timeout, stop the script's background processes too.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			began := time.Now()
			out, err := cmd.CombinedOutput()
			took := time.Since(began)
			if err != nil || ctx.Err() != nil {
				t.Fatalf("the tour's start failed to run (%v, %v):\n%s", err, ctx.Err(), out)
			}
			ready := strings.Contains(string(out), "TOUR-KEYD-READY")
			if ready != tt.ready {
				t.Errorf("the tour's keyd ready = %v, want %v; output:\n%s", ready, tt.ready, out)
			}
			if !tt.ready && (!strings.Contains(string(out), tt.want) || !strings.Contains(string(out), "exited before it was ready")) {
				t.Errorf("the tour's wait does not show keyd's log (%q) and why it stopped; output:\n%s", tt.want, out)
			}
			if !tt.ready && took > 30*time.Second {
				t.Errorf("the tour's wait took %s to notice that keyd exited", took)
			}
		})
	}
}
