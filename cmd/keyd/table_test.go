package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// hostile holds what an operator (or an attacker who can start a rotation)
// could put in a reason: a newline that forges a row, a tab, terminal
// escape sequences (OSC title, clear screen), a bidi override.
const hostile = "drill\n99\t2030-01-01T00:00:00Z\tdestroyed\t1\tkid\tadmin\tforged row\x1b]0;pwned\x07\x1b[2J\u202eevil\\n"

func fakeServer(t *testing.T, routes map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := routes[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// checkTable fails unless out has exactly wantLines lines and no control
// character other than the newlines ending them.
func checkTable(t *testing.T, out string, wantLines int) {
	t.Helper()
	if n := strings.Count(out, "\n"); n != wantLines {
		t.Errorf("%d lines, want %d (a value forged rows):\n%s", n, wantLines, out)
	}
	for _, r := range strings.ReplaceAll(out, "\n", "") {
		if needsEscape(r) {
			t.Errorf("output holds the raw control character %U:\n%q", r, out)
		}
	}
}

func TestTablesEscapeControlCharacters(t *testing.T) {
	reason, _ := jsonString(hostile)
	url := fakeServer(t, map[string]string{
		"/v1/audit": `{"chain_valid":true,"events":[{"seq":1,"time":"2030-01-01T00:00:00Z","type":"created","kid":"k1","version":1,"actor":"role:admin","reason":` + reason + `,"prev_hash":"","hash":""}]}`,
		"/v1/keys":  `{"keys":[{"kid":` + reason + `,"state":"active","alg":"ES256","version":1,"created_at":"2030-01-01T00:00:00Z","activates_at":"2030-01-01T00:00:00Z","retires_at":null}]}`,
	})
	var out, errOut bytes.Buffer
	if code := cmdAudit(context.Background(), []string{"--server", url, "--token", "t"}, &out, &errOut); code != 0 {
		t.Fatalf("keyd audit = %d: %s", code, errOut.String())
	}
	checkTable(t, out.String(), 3) // header, one event, "chain valid"
	if !strings.Contains(out.String(), `drill\n99\t2030`) || !strings.Contains(out.String(), `\x1b]0;pwned\x07`) || !strings.Contains(out.String(), `\u202eevil\\n`) {
		t.Errorf("the reason is not shown escaped:\n%s", out.String())
	}

	out.Reset()
	if code := cmdKeys(context.Background(), []string{"--server", url, "--token", "t"}, &out, &errOut); code != 0 {
		t.Fatalf("keyd keys = %d: %s", code, errOut.String())
	}
	checkTable(t, out.String(), 2) // header, one key
}

func TestCell(t *testing.T) {
	for in, want := range map[string]string{
		"plain reason, ünïcode ✓": "plain reason, ünïcode ✓",
		"a\nb":                    `a\nb`,
		"a\tb\r":                  `a\tb\r`,
		"\x1b[31mred":             `\x1b[31mred`,
		"\u0085next line":         `\u0085next line`,
		"\u2028sep":               `\u2028sep`,
		"back\\slash":             `back\\slash`,
		"bad \xff utf8":           `bad \xff utf8`,
	} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %q, want %q", in, got, want)
		}
	}
}

func jsonString(s string) (string, error) {
	raw, err := json.Marshal(s)
	return string(raw), err
}
