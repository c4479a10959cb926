package tools

import (
	"os"
	"regexp"
	"strings"
	"testing"
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
	}
	if servers < 2 {
		t.Errorf("README starts %d keyd servers in the background, want the local and the Vault one", servers)
	}
}
