package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openedx-keyd/keyd/internal/audit"
)

// TestAuditReportCLI: keyd audit report online (auditor and admin) and
// offline (--file, as keyd audit verify reads it), and on a tampered log
// the report's verdict is verify's error, word for word.
func TestAuditReportCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startKeyd(t, dir, nil)
	if status, body := p.call(t, http.MethodPost, "/v1/rotate", p.token(t, "admin"), `{"reason":"drill <b>bold</b>"}`); status != http.StatusOK {
		t.Fatalf("rotate: %d %s", status, body)
	}
	readJSON := func(out string) audit.Report {
		t.Helper()
		var r audit.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("not a JSON report: %v\n%s", err, out)
		}
		return r
	}
	for _, role := range []string{"auditor", "admin"} {
		stdout, stderr, code := runKeyd(t, "", nil, "audit", "report", "--server", p.url, "--token", p.token(t, role), "--format", "json")
		if code != 0 {
			t.Fatalf("online report as %s: exit %d\n%s", role, code, stderr)
		}
		r := readJSON(stdout)
		if r.Chain.Verdict != audit.VerdictIntact || len(r.Keys) != 2 || !strings.Contains(r.Policy.Source, "server's configuration") {
			t.Fatalf("online report as %s: %+v", role, r.Chain)
		}
	}
	if _, stderr, code := runKeyd(t, "", nil, "audit", "report", "--server", p.url, "--token", p.token(t, "signer")); code == 0 || !strings.Contains(stderr, "forbidden") {
		t.Fatalf("online report as signer: exit %d %s", code, stderr)
	}
	out := filepath.Join(t.TempDir(), "report.html")
	if _, stderr, code := runKeyd(t, "", nil, "audit", "report", "--server", p.url, "--token", p.token(t, "auditor"), "--out", out); code != 0 {
		t.Fatalf("online html report: exit %d %s", code, stderr)
	}
	page, _ := os.ReadFile(out)
	if !bytes.Contains(page, []byte("<svg class=\"timeline\"")) || !bytes.Contains(page, []byte("drill &lt;b&gt;bold&lt;/b&gt;")) {
		t.Fatalf("the html report has no timeline or an unescaped reason:\n%.2000s", page)
	}
	p.stop(t)

	log := filepath.Join(dir, "audit.log")
	verifyOut, _, code := runKeyd(t, "", nil, "audit", "verify", "--file", log)
	if code != 0 {
		t.Fatalf("verify: exit %d", code)
	}
	stdout, stderr, code := runKeyd(t, "", nil, "audit", "report", "--file", log, "--format", "json", "--rotation-schedule", "@every 1h")
	if code != 0 {
		t.Fatalf("offline report: exit %d %s", code, stderr)
	}
	r := readJSON(stdout)
	if r.Chain.Verdict != audit.VerdictIntact || !strings.Contains(verifyOut, r.Chain.HeadHash) || !r.Chain.HeadChecked || !r.Chain.Reconciled {
		t.Fatalf("offline report %+v; verify said\n%s", r.Chain, verifyOut)
	}
	if !strings.Contains(r.Policy.Source, "flags") || r.Policy.RotationSchedule != "@every 1h" || !strings.Contains(strings.Join(r.Policy.Defaulted, ","), "propagation-delay") {
		t.Fatalf("offline policy %+v", r.Policy)
	}

	// Tamper with the rotation's created event (its reason), hash left.
	raw, _ := os.ReadFile(log)
	tampered := bytes.Replace(raw, []byte("drill <b>bold</b>"), []byte("routine"), 1)
	if bytes.Equal(raw, tampered) {
		t.Fatal("the rotation's reason is not in the log")
	}
	if err := os.WriteFile(log, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	_, verifyErr, code := runKeyd(t, "", nil, "audit", "verify", "--file", log)
	if code == 0 {
		t.Fatal("verify passed a tampered log")
	}
	stdout, stderr, code = runKeyd(t, "", nil, "audit", "report", "--file", log, "--format", "json")
	if code != 0 {
		t.Fatalf("a report of a tampered chain is still a report: exit %d %s", code, stderr)
	}
	r = readJSON(stdout)
	if r.Chain.Verdict != audit.VerdictBroken || strings.TrimSpace(verifyErr) != "keyd audit verify: "+r.Chain.Error {
		t.Fatalf("report says %q (%s), verify says %q", r.Chain.Error, r.Chain.Verdict, verifyErr)
	}
}

func TestAuditReportBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--file", "x.log", "--vault"},
		{"--file", "x.log", "--since", "yesterday"},
		{"--file", "x.log", "--since", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"},
		{"--file", "x.log", "--format", "pdf"},
		{"--file", "x.log", "--rotation-schedule", "every tuesday"},
	} {
		_, stderr, code := runKeyd(t, "", nil, append([]string{"audit", "report"}, args...)...)
		if code != 2 || !strings.HasPrefix(stderr, "keyd audit report: ") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("keyd audit report %v: exit %d, want 2 and one line\n%s", args, code, stderr)
		}
	}
	_, stderr, code := runKeyd(t, "", nil, "audit", "report", "--file", filepath.Join(t.TempDir(), "missing.log"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing log: exit %d %s", code, stderr)
	}
}
