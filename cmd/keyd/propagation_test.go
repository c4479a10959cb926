package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestPropagationTableEscapes: `keyd propagation` and the waiting line of
// `keyd keys` escape every value read from the server.
func TestPropagationTableEscapes(t *testing.T) {
	h, _ := jsonString(hostile)
	url := fakeServer(t, map[string]string{
		"/v1/propagation": `{"pending":{"kid":` + h + `,"version":2,"activates_at":"2030-01-01T00:00:00Z","confirmed":false,"gated":true,"activation_deadline":"2030-01-08T00:00:00Z"},
			"clients":[{"client":` + h + `,"confirmed":false,"confirmed_by":null,"instances_live":1,"instances_holding":0,
			"instances":[{"instance":` + h + `,"last_fetch":"2030-01-01T00:00:00Z","max_version":1}]},
			{"client":"notes","confirmed":true,"confirmed_by":"admin","instances_live":0,"instances_holding":0,"instances":[]}]}`,
		"/v1/keys": `{"keys":[{"kid":"k2","state":"pending","alg":"ES256","version":2,"created_at":"2030-01-01T00:00:00Z","activates_at":"2030-01-01T00:00:00Z","retires_at":null,
			"waiting_for":[{"client":` + h + `,"instances_holding":2,"instances_live":3}]}]}`,
	})
	var out, errOut bytes.Buffer
	if code := cmdPropagation(context.Background(), []string{"--server", url, "--token", "t"}, &out, &errOut); code != 0 {
		t.Fatalf("keyd propagation = %d: %s", code, errOut.String())
	}
	checkTable(t, out.String(), 6) // pending header and row, a blank line, clients header, two rows
	if !strings.Contains(out.String(), `\x1b]0;pwned\x07`) || !strings.Contains(out.String(), "admin") || !strings.Contains(out.String(), "0 of 1") {
		t.Errorf("keyd propagation:\n%s", out.String())
	}
	out.Reset()
	if code := cmdKeys(context.Background(), []string{"--server", url, "--token", "t"}, &out, &errOut); code != 0 {
		t.Fatalf("keyd keys = %d: %s", code, errOut.String())
	}
	checkTable(t, out.String(), 3) // header, the key, its waiting line
	if !strings.Contains(out.String(), "version 2 waiting for drill") || !strings.Contains(out.String(), ": 2 of 3 instances") {
		t.Errorf("keyd keys:\n%s", out.String())
	}
}

// TestPropagationConfirmFlags: --client and --version are required.
func TestPropagationConfirmFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{"confirm"}, {"confirm", "--client", "notes"}, {"confirm", "--version", "2"}, {"confirm", "--client", " ", "--version", "2"}} {
		if code := cmdPropagation(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}
