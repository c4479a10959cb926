package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHelpExitsZero: every subcommand's --help (and -h, and "keyd help
// CMD") prints its synopsis and flags on stdout, exits 0 and runs nothing.
func TestHelpExitsZero(t *testing.T) {
	dir := t.TempDir()
	for _, cmd := range [][]string{
		{"serve"}, {"bootstrap"}, {"sign"}, {"jwks"}, {"keys"}, {"rotate"},
		{"audit"}, {"audit", "verify"}, {"verify"}, {"healthcheck"},
	} {
		name := strings.Join(cmd, " ")
		for _, args := range [][]string{
			append(cmd[:len(cmd):len(cmd)], "--help"),
			append(cmd[:len(cmd):len(cmd)], "-h"),
			// Help wins over the flags around it, and nothing runs.
			append(cmd[:len(cmd):len(cmd)], "--server", "http://127.0.0.1:1", "--help", "--data-dir", filepath.Join(dir, "data")),
			append([]string{"help"}, cmd...),
		} {
			stdout, stderr, code := runKeyd(t, "", nil, args...)
			if code != 0 {
				t.Errorf("keyd %s: exit %d, want 0; stderr %q", strings.Join(args, " "), code, stderr)
			}
			if !strings.HasPrefix(stdout, "usage: keyd "+name) || !strings.Contains(stdout, "-") {
				t.Errorf("keyd %s printed on stdout:\n%s\nwant the synopsis \"usage: keyd %s ...\" and the flags", strings.Join(args, " "), stdout, name)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("a --help run created the data dir")
	}
	stdout, _, code := runKeyd(t, "", nil, "--help")
	if code != 0 || !strings.Contains(stdout, "rotate") {
		t.Errorf("keyd --help: exit %d:\n%s", code, stdout)
	}
}

// TestServeHelpListsEnvironment: serve --help names every variable serve
// reads besides the flags' own.
func TestServeHelpListsEnvironment(t *testing.T) {
	stdout, _, code := runKeyd(t, "", nil, "serve", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, v := range []string{"KEYD_SIGNER_TOKEN", "KEYD_ADMIN_TOKEN", "KEYD_AUDITOR_TOKEN", "VAULT_ADDR", "VAULT_TOKEN", "KEYD_LISTEN", "KEYD_BACKEND"} {
		if !strings.Contains(stdout, v) {
			t.Errorf("keyd serve --help does not name %s:\n%s", v, stdout)
		}
	}
}

// TestServerWithoutScheme: a --server without http:// or https:// is one
// clear line, not Go's URL parser.
func TestServerWithoutScheme(t *testing.T) {
	for _, server := range []string{"127.0.0.1:8080", "localhost:8080", "keyd.example.com", "ftp://keyd.example.com"} {
		_, stderr, code := runKeyd(t, "", nil, "keys", "--server", server, "--token", "t")
		if code == 0 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 ||
			!strings.Contains(stderr, "--server") || !strings.Contains(stderr, "http://") || strings.Contains(stderr, "unsupported protocol") {
			t.Errorf("keyd keys --server %s: exit %d, stderr %q; want one line naming --server and http://", server, code, stderr)
		}
	}
}

// TestListeningOnlyAfterBind: with the port held by another process, keyd
// serve exits non-zero, never logs "listening", and touches no data.
func TestListeningOnlyAfterBind(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	_, stderr, code := runKeyd(t, "", nil, "serve", "--listen", "127.0.0.1:"+strconv.Itoa(l.Addr().(*net.TCPAddr).Port), "--data-dir", dataDir)
	if code == 0 {
		t.Fatalf("keyd serve on a held port exited 0:\n%s", stderr)
	}
	if strings.Contains(stderr, "listening") {
		t.Errorf("keyd logged listening on a port it could not bind:\n%s", stderr)
	}
	if !strings.Contains(stderr, "address already in use") {
		t.Errorf("stderr does not say the address is in use:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "keys")); err == nil {
		t.Error("keyd created keys although it could not listen")
	}
}

// TestRotateTable: keyd rotate prints the key as keyd keys does, with its
// activation time, and says so when a pending key made it create nothing.
func TestRotateTable(t *testing.T) {
	p := startKeyd(t, t.TempDir(), nil)
	admin := p.token(t, "admin")
	rotate := func(args ...string) []string {
		t.Helper()
		stdout, stderr, code := runKeyd(t, "", nil, append([]string{"rotate", "--server", p.url, "--token", admin}, args...)...)
		if code != 0 {
			t.Fatalf("keyd rotate %v: exit %d: %s", args, code, stderr)
		}
		return strings.Split(strings.TrimSpace(stdout), "\n")
	}
	fields := func(line string) []string { return strings.Fields(line) }

	out := rotate()
	if len(out) != 2 || strings.Join(fields(out[0]), " ") != "VERSION STATE ALG KID CREATED ACTIVATES RETIRES" {
		t.Fatalf("keyd rotate printed:\n%s\nwant the keys table header and one row", strings.Join(out, "\n"))
	}
	row := fields(out[1])
	if len(row) != 7 || row[0] != "2" || row[1] != "pending" || row[5] == "-" || row[5] == row[4] {
		t.Errorf("keyd rotate row %q, want version 2 pending with its activates_at (24h after created)", out[1])
	}

	again := rotate("--reason", "again")
	if len(again) != 3 || !strings.Contains(again[0], "a key is already pending: nothing created") || fields(again[2])[0] != "2" {
		t.Errorf("keyd rotate while pending printed:\n%s\nwant \"a key is already pending: nothing created\" and the pending version 2", strings.Join(again, "\n"))
	}

	em := rotate("--emergency", "--reason", "drill")
	if len(em) != 2 || strings.Contains(em[0], "nothing created") || fields(em[1])[0] != "3" || fields(em[1])[1] != "active" {
		t.Errorf("keyd rotate --emergency printed:\n%s\nwant version 3 active", strings.Join(em, "\n"))
	}

	stdout, _, code := runKeyd(t, "", nil, "rotate", "--server", p.url, "--token", admin, "--json")
	if code != 0 || !strings.HasPrefix(stdout, `{"kid":`) {
		t.Errorf("keyd rotate --json: exit %d: %s", code, stdout)
	}
}

// TestVaultErrorsAreOneLine: a token Vault refuses (bootstrap with a weak
// token, audit verify --vault with the admin's) is one line naming the path
// and Vault's reason, not the vault/api package's multi-line dump.
func TestVaultErrorsAreOneLine(t *testing.T) {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`))
	}))
	defer fake.Close()
	env := []string{"VAULT_ADDR=" + fake.URL, "VAULT_TOKEN=hvs.weak"}
	for _, tt := range []struct {
		args []string
		path string
	}{
		{[]string{"bootstrap"}, "GET /v1/sys/mounts"},
		{[]string{"audit", "verify", "--vault", "--token", "hvs.admin"}, "/v1/"},
	} {
		_, stderr, code := runKeyd(t, "", env, tt.args...)
		line := strings.TrimSpace(stderr)
		if code != 1 || strings.Contains(line, "\n") || !strings.Contains(line, tt.path) ||
			!strings.Contains(line, ": 403: ") || !strings.Contains(line, "permission denied") || strings.Contains(line, "Error making API request") {
			t.Errorf("keyd %s: exit %d, stderr:\n%s\nwant exit 1 and one line naming %s, 403 and permission denied", strings.Join(tt.args, " "), code, stderr, tt.path)
		}
	}
}

// TestSynopsisNamesEveryFlag: each command's synopsis line names every flag
// the command takes (or says [flags]), so --help's first lines are complete.
func TestSynopsisNamesEveryFlag(t *testing.T) {
	for _, cmd := range [][]string{
		{"bootstrap"}, {"sign"}, {"jwks"}, {"keys"}, {"rotate"}, {"audit"}, {"audit", "verify"},
		{"propagation"}, {"propagation", "confirm"}, {"verify"}, {"healthcheck"},
	} {
		stdout, stderr, code := runKeyd(t, "", nil, append(cmd, "--help")...)
		if code != 0 {
			t.Fatalf("keyd %v --help: exit %d: %s", cmd, code, stderr)
		}
		out := stdout + stderr // keyd verify prints its help on stderr
		synopsis, _, _ := strings.Cut(out, "\n\n")
		if strings.Contains(synopsis, "[flags]") {
			continue
		}
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if !strings.HasPrefix(l, "  -") || len(f) == 0 {
				continue
			}
			name := strings.TrimLeft(f[0], "-")
			if !strings.Contains(synopsis, "--"+name) {
				t.Errorf("keyd %s --help: the synopsis does not name --%s:\n%s", strings.Join(cmd, " "), name, synopsis)
			}
		}
	}
}

// TestUsageErrorIsOneLine: an unknown flag, a bad flag value or a stray
// argument is one line naming it, with the --help hint; not the whole usage.
func TestUsageErrorIsOneLine(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // what the line must name
	}{
		{[]string{"serve", "--no-such-flag"}, "no-such-flag"}, {[]string{"serve", "stray"}, "stray"},
		{[]string{"bootstrap", "--nope"}, "nope"}, {[]string{"sign", "--nope"}, "nope"},
		{[]string{"jwks", "--nope"}, "nope"}, {[]string{"keys", "--json=maybe"}, "json"},
		{[]string{"rotate", "--nope"}, "nope"}, {[]string{"audit", "--nope"}, "nope"},
		{[]string{"audit", "verify", "--nope"}, "nope"}, {[]string{"propagation", "--nope"}, "nope"},
		{[]string{"propagation", "confirm", "--nope"}, "nope"}, {[]string{"verify", "--nope"}, "nope"},
		{[]string{"verify", "--leeway", "soon", "tok"}, "leeway"}, {[]string{"healthcheck", "--nope"}, "nope"},
	} {
		stdout, stderr, code := runKeyd(t, "", nil, tt.args...)
		msg := strings.TrimSpace(stderr)
		if code != 2 || stdout != "" || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "--help") || !strings.Contains(msg, tt.want) {
			t.Errorf("keyd %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and one line naming %s with a --help hint",
				strings.Join(tt.args, " "), code, stdout, stderr, tt.want)
		}
	}
}

// TestHealthcheckPID: with --pid, only the answer of that keyd counts (not
// another keyd's, not another server's), and --wait stops at once when the
// process has exited.
func TestHealthcheckPID(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"ready":true,"pid":1}`))
	}))
	defer other.Close()
	notKeyd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`ok`)) }))
	defer notKeyd.Close()
	me := strconv.Itoa(os.Getpid())
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--url", other.URL, "--pid", "1"}, 0, ""},
		{[]string{"--url", other.URL}, 0, ""},
		{[]string{"--url", other.URL, "--pid", me}, 1, "another keyd (pid 1)"},
		{[]string{"--url", notKeyd.URL, "--pid", me}, 1, "not keyd"},
		// The test process lives and another keyd answers: wait, then say why.
		{[]string{"--url", other.URL, "--pid", me, "--wait", "1s"}, 1, "not ready after 1s"},
	} {
		_, stderr, code := runKeyd(t, "", nil, append([]string{"healthcheck"}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("keyd healthcheck %v: exit %d, stderr %q; want exit %d and one line with %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}

	// A process that has exited (and been collected): at once.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, stderr, code := runKeyd(t, "", nil, "healthcheck", "--url", other.URL, "--pid", strconv.Itoa(gone.Process.Pid), "--wait", "20s")
	if code != 1 || !strings.Contains(stderr, "exited before it was ready") || time.Since(began) > 5*time.Second {
		t.Errorf("healthcheck --pid <exited> --wait 20s: exit %d after %s, stderr %q", code, time.Since(began), stderr)
	}
}
