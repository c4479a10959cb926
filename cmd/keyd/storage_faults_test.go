package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// auditPage is GET /v1/audit.
func auditPage(t *testing.T, p *keydProc) (valid bool, n int) {
	t.Helper()
	status, body := p.call(t, http.MethodGet, "/v1/audit", p.token(t, "auditor"), "")
	if status != http.StatusOK {
		t.Fatalf("GET /v1/audit: %d %s", status, body)
	}
	var out struct {
		Events     []json.RawMessage `json:"events"`
		ChainValid bool              `json:"chain_valid"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out.ChainValid, len(out.Events)
}

// metric is the value of an unlabelled metric on /metrics ("" when absent).
func metric(t *testing.T, p *keydProc, name string) string {
	t.Helper()
	_, body := p.call(t, http.MethodGet, "/metrics", "", "")
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// storageProblems is the storage part of the /readyz body, and the
// keyd_storage_problems gauge.
func storageProblems(t *testing.T, p *keydProc) (string, string) {
	t.Helper()
	status, body := p.call(t, http.MethodGet, "/readyz", "", "")
	if status != http.StatusOK {
		t.Errorf("/readyz = %d, want 200 (keyd serves what is sound): %s", status, body)
	}
	var r struct {
		Storage []string `json:"storage_problems"`
	}
	json.Unmarshal(body, &r)
	_, metrics := p.call(t, http.MethodGet, "/metrics", "", "")
	var gauge string
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "keyd_storage_problems ") {
			gauge = strings.TrimPrefix(line, "keyd_storage_problems ")
		}
	}
	return strings.Join(r.Storage, "\n"), gauge
}

// TestBadFilesInTheDataDir (issue 12, item 4): a corrupt pending key, a
// stray directory in keys/ and a garbage line in the middle of audit.log.
// keyd still starts, serves the JWKS, signs, rotates in an emergency, and
// says loudly what it set aside (log, /readyz, metric).
func TestBadFilesInTheDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startKeyd(t, dir, nil)
	admin := p.token(t, "admin")
	if status, body := p.call(t, http.MethodPost, "/v1/rotate", admin, `{"reason":"drill"}`); status != http.StatusOK {
		t.Fatalf("rotate: %d %s", status, body)
	}
	p.stop(t)

	// Fault injection.
	if err := os.WriteFile(filepath.Join(dir, "keys", "00000002.json"), []byte(`{"record":{"version":2,`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "keys", "00000005.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "audit.log")
	raw, _ := os.ReadFile(log)
	first, rest, _ := bytes.Cut(raw, []byte("\n"))
	if err := os.WriteFile(log, bytes.Join([][]byte{first, []byte(`{"garbage":true}`), rest}, []byte("\n")), 0o600); err != nil {
		t.Fatal(err)
	}

	p = startKeyd(t, dir, nil) // fails the test if keyd does not become ready
	if kids, _ := p.jwks(t); len(kids) != 1 {
		t.Errorf("JWKS holds %d keys, want the sound active key", len(kids))
	}
	p.sign(t, p.token(t, "signer"))
	problems, gauge := storageProblems(t, p)
	for _, want := range []string{"00000002.json", "00000005.json", "quarantine", "audit.log line 2"} {
		if !strings.Contains(problems, want) {
			t.Errorf("/readyz storage_problems do not mention %q:\n%s", want, problems)
		}
	}
	if gauge != "3" {
		t.Errorf("keyd_storage_problems = %q, want 3", gauge)
	}
	if !strings.Contains(p.stderr.String(), "storage problem") {
		t.Errorf("no error logged for the bad files:\n%s", p.stderr.String())
	}
	if valid, _ := auditPage(t, p); valid {
		t.Error("chain_valid with a garbage line in the log")
	}
	if got := metric(t, p, "keyd_audit_chain_valid"); got != "0" {
		t.Errorf("keyd_audit_chain_valid = %q with a garbage line in the log, want 0", got)
	}
	status, body := p.call(t, http.MethodPost, "/v1/rotate", admin, `{"emergency":true,"reason":"laptop stolen"}`)
	if status != http.StatusOK {
		t.Fatalf("emergency rotation with bad files in the data dir: %d %s", status, body)
	}
	var em struct{ Version int }
	json.Unmarshal(body, &em)
	if em.Version <= 5 {
		t.Errorf("emergency key is version %d: it reuses a set-aside version number (2 or 5)", em.Version)
	}
	if kids, _ := p.jwks(t); len(kids) != 1 {
		t.Errorf("JWKS after the emergency holds %d keys, want 1", len(kids))
	}
}

// TestDeletedAuditLogIsReported (issue 12, item 6): deleting audit.log no
// longer starts a fresh chain that verifies as intact.
func TestDeletedAuditLogIsReported(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startKeyd(t, dir, nil)
	if valid, n := auditPage(t, p); !valid || n == 0 {
		t.Fatalf("fresh chain: valid=%v with %d events", valid, n)
	}
	for name, want := range map[string]string{"keyd_audit_chain_valid": "1", "keyd_ready": "1", "keyd_backend_login_ok": "1"} {
		if got := metric(t, p, name); got != want {
			t.Errorf("fresh keyd: %s = %q, want %s", name, got, want)
		}
	}
	p.stop(t)
	log := filepath.Join(dir, "audit.log")
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	// Event times are whole seconds: restarted within the same second, keyd
	// would write the very same chain again (nothing lost, nothing to see).
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))

	p = startKeyd(t, dir, nil)
	if status, body := p.call(t, http.MethodPost, "/v1/rotate", p.token(t, "admin"), `{"reason":"after"}`); status != http.StatusOK {
		t.Fatalf("rotate: %d %s", status, body)
	}
	if valid, _ := auditPage(t, p); valid {
		t.Error("chain_valid = true for a chain restarted after audit.log was deleted")
	}
	if problems, _ := storageProblems(t, p); !strings.Contains(problems, "does not match the head recorded beside the keys") {
		t.Errorf("/readyz does not report the deleted log:\n%s", problems)
	}
	// The chain was checked when keyd started: it pages without an auditor asking.
	if got := metric(t, p, "keyd_audit_chain_valid"); got != "0" {
		t.Errorf("keyd_audit_chain_valid = %q after audit.log was deleted, want 0", got)
	}
	if !strings.Contains(p.stderr.String(), "the chain does not verify") {
		t.Errorf("no error logged for the broken chain:\n%s", p.stderr.String())
	}
	p.stop(t)
	stdout, stderr, code := runKeyd(t, "", nil, "audit", "verify", "--file", log)
	if code == 0 || !strings.Contains(stderr, "head") {
		t.Errorf("keyd audit verify after the log was deleted: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestAuditVerifyFileSaysWhatItChecked (issue 12, items 5 and 7).
func TestAuditVerifyFileSaysWhatItChecked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startKeyd(t, dir, nil)
	if status, body := p.call(t, http.MethodPost, "/v1/rotate", p.token(t, "admin"), `{"reason":"drill"}`); status != http.StatusOK {
		t.Fatalf("rotate: %d %s", status, body)
	}
	p.stop(t)
	log := filepath.Join(dir, "audit.log")
	raw, _ := os.ReadFile(log)
	lines := bytes.SplitAfter(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
	var last struct {
		Seq  int64  `json:"seq"`
		Hash string `json:"hash"`
	}
	json.Unmarshal(lines[len(lines)-1], &last)

	stdout, stderr, code := runKeyd(t, "", nil, "audit", "verify", "--file", log)
	if code != 0 || !strings.Contains(stdout, "audit chain intact") || !strings.Contains(stdout, "reconciled with 2 key versions") {
		t.Fatalf("verify the data dir's own log: exit %d\n%s%s", code, stdout, stderr)
	}
	pin := "records, head seq " + jsonInt(last.Seq) + " hash " + last.Hash
	if !strings.Contains(stdout, pin) {
		t.Errorf("verify does not print %q:\n%s", pin, stdout)
	}

	// A cut-off copy of the log, alone: nothing to reconcile with.
	alone := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(alone, bytes.Join(lines[:len(lines)-1], nil), 0o600)
	stdout, stderr, code = runKeyd(t, "", nil, "audit", "verify", "--file", alone)
	if code == 0 || strings.Contains(stdout, "audit chain intact") || !strings.Contains(stderr, "reconciliation was not possible") {
		t.Errorf("verify a lone copy: exit %d, want non-zero and a clear line\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = runKeyd(t, "", nil, "audit", "verify", "--file", alone, "--data-dir", filepath.Join(t.TempDir(), "nowhere"))
	if code == 0 || !strings.Contains(stderr, "reconciliation was not possible") {
		t.Errorf("verify with --data-dir pointing nowhere: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = runKeyd(t, "", nil, "audit", "verify", "--file", alone, "--chain-only")
	if code != 0 || !strings.Contains(stdout, "chain only") {
		t.Errorf("verify --chain-only: exit %d\n%s%s", code, stdout, stderr)
	}
	// The same cut-off copy against the data dir: the recorded head shows the cut.
	stdout, stderr, code = runKeyd(t, "", nil, "audit", "verify", "--file", alone, "--data-dir", dir)
	if code == 0 || !strings.Contains(stderr, "cut off") {
		t.Errorf("verify a cut-off copy against its data dir: exit %d\n%s%s", code, stdout, stderr)
	}

	// Item 5: a key deleted without its destroyed event (what a crash
	// between the deletion and the event used to leave) is reported.
	if err := os.Remove(filepath.Join(dir, "keys", "00000001.json")); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = runKeyd(t, "", nil, "audit", "verify", "--file", log)
	if code == 0 || !strings.Contains(stderr, "key version 1") || !strings.Contains(stderr, "without a destroyed event") {
		t.Errorf("verify after v1 vanished without its event: exit %d\n%s%s", code, stdout, stderr)
	}
}

func jsonInt(n int64) string {
	raw, _ := json.Marshal(n)
	return string(raw)
}

// TestBadPropagationFilesInTheDataDir (issue 20, item 2): keyd restarted
// over one bad file of the propagation store (a truncated activation, a
// corrupt confirmation, observations.json replaced by a directory) becomes
// ready, serves the JWKS and signs, sets the file aside and says so
// (/readyz, metric); the gated key whose activation cannot be read is not
// active (it waits for its clients again).
func TestBadPropagationFilesInTheDataDir(t *testing.T) {
	gated := []string{"KEYD_EXPECTED_CLIENTS=ecommerce"}
	for _, tc := range []struct {
		name, path, moved string
		dir               bool
	}{
		{"truncated activation", "propagation/activations/2.json", "propagation.activations.2.json.", false},
		{"corrupt confirmation", "propagation/confirmations/2/ecommerce.json", "propagation.confirmations.2.ecommerce.json.", false},
		{"observations a directory", "propagation/observations.json", "propagation.observations.json.", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			p := startKeyd(t, dir, gated)
			admin := p.token(t, "admin")
			if status, body := p.call(t, http.MethodPost, "/v1/rotate", admin, `{"reason":"drill"}`); status != http.StatusOK {
				t.Fatalf("rotate: %d %s", status, body)
			}
			oldKID := p.sign(t, p.token(t, "signer")).KID
			p.stop(t)

			// Fault injection.
			path := filepath.Join(dir, filepath.FromSlash(tc.path))
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			os.Remove(path)
			var err error
			if tc.dir {
				err = os.Mkdir(path, 0o700)
			} else {
				err = os.WriteFile(path, []byte(`{"version":2,"at":"2030-0`), 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}

			p = startKeyd(t, dir, gated) // fails the test if keyd does not become ready
			if kids, _ := p.jwks(t); len(kids) != 2 {
				t.Errorf("JWKS holds %d keys, want the active and the pending key", len(kids))
			}
			if kid := p.sign(t, p.token(t, "signer")).KID; kid != oldKID {
				t.Errorf("signed with %s, want the active v1 (%s): the gated key whose activation cannot be read signs", kid, oldKID)
			}
			status, body := p.call(t, http.MethodGet, "/v1/keys", admin, "")
			if status != http.StatusOK || !strings.Contains(string(body), `"state":"pending"`) {
				t.Errorf("/v1/keys = %d %s, want v2 still pending", status, body)
			}
			problems, gauge := storageProblems(t, p)
			if !strings.Contains(problems, tc.moved) || !strings.Contains(problems, "quarantine") {
				t.Errorf("/readyz storage_problems do not report %s*:\n%s", tc.moved, problems)
			}
			if gauge != "1" {
				t.Errorf("keyd_storage_problems = %q, want 1", gauge)
			}
			if q, _ := filepath.Glob(filepath.Join(dir, "quarantine", tc.moved+"*")); len(q) != 1 {
				t.Errorf("quarantine holds %v", q)
			}
			// The store works again: an admin confirmation is stored.
			if status, body := p.call(t, http.MethodPost, "/v1/propagation/confirm", admin, `{"client":"ecommerce","version":2}`); status != http.StatusOK {
				t.Errorf("confirm after the bad file: %d %s", status, body)
			}
		})
	}
}

// TestAuditVerifyReportsADecisionWithoutItsEvent (issue 20, item 4): a
// propagation decision stored without its audit event (a crash between the
// two) is reported by keyd audit verify, and the next start records the
// missing event, after which the chain accounts for it.
func TestAuditVerifyReportsADecisionWithoutItsEvent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	gated := []string{"KEYD_EXPECTED_CLIENTS=ecommerce,notes"}
	p := startKeyd(t, dir, gated)
	if status, body := p.call(t, http.MethodPost, "/v1/rotate", p.token(t, "admin"), `{"reason":"drill"}`); status != http.StatusOK {
		t.Fatalf("rotate: %d %s", status, body)
	}
	p.stop(t)
	log := filepath.Join(dir, "audit.log")
	if stdout, stderr, code := runKeyd(t, "", nil, "audit", "verify", "--file", log); code != 0 {
		t.Fatalf("verify before the fault: exit %d\n%s%s", code, stdout, stderr)
	}

	// Fault injection: the admin confirmation of notes was stored, then
	// keyd died before its propagation_confirmed event was written.
	at := time.Now().Add(-2 * time.Minute).UTC().Truncate(time.Second).Format(time.RFC3339)
	conf := filepath.Join(dir, "propagation", "confirmations", "2", "notes.json")
	if err := os.MkdirAll(filepath.Dir(conf), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(`{"client":"notes","version":2,"by":"admin","at":"`+at+`","actor":"role:admin"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runKeyd(t, "", nil, "audit", "verify", "--file", log)
	if code == 0 || !strings.Contains(stderr, "propagation_confirmed of version 2 (client notes confirmed by admin)") {
		t.Errorf("verify with a decision without its event: exit %d, want 1 naming it\n%s%s", code, stdout, stderr)
	}

	p = startKeyd(t, dir, gated) // records the missing event
	if valid, _ := auditPage(t, p); !valid {
		t.Error("chain_valid = false after the start recorded the missing event")
	}
	p.stop(t)
	if stdout, stderr, code := runKeyd(t, "", nil, "audit", "verify", "--file", log); code != 0 || !strings.Contains(stdout, "1 propagation decisions") {
		t.Errorf("verify after the restart: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestFollowingTheQuarantineAdvice (issue 20, item 3): operations.md says
// to examine a quarantined key file and remove it. Done for the newest key,
// keyd still creates keys (a rotation used to answer 200 creating nothing,
// an emergency to fail on every retry), never reuses the number, and the
// audit still accounts for the removed version.
func TestFollowingTheQuarantineAdvice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startKeyd(t, dir, nil)
	admin := p.token(t, "admin")
	if status, body := p.call(t, http.MethodPost, "/v1/rotate", admin, `{"reason":"drill"}`); status != http.StatusOK {
		t.Fatalf("rotate: %d %s", status, body)
	}
	p.stop(t)
	if err := os.WriteFile(filepath.Join(dir, "keys", "00000002.json"), []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	p = startKeyd(t, dir, nil) // sets v2 aside
	p.stop(t)
	q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "00000002.json.*"))
	if len(q) != 1 {
		t.Fatalf("quarantine holds %v", q)
	}
	if err := os.Remove(q[0]); err != nil { // examined, then removed
		t.Fatal(err)
	}

	p = startKeyd(t, dir, nil)
	var got struct {
		Version int
		State   string
	}
	status, body := p.call(t, http.MethodPost, "/v1/rotate", admin, `{"reason":"after the removal"}`)
	json.Unmarshal(body, &got)
	if status != http.StatusOK || got.Version != 3 || got.State != "pending" {
		t.Errorf("rotate after the removal: %d %s, want a new pending v3", status, body)
	}
	status, body = p.call(t, http.MethodPost, "/v1/rotate", admin, `{"emergency":true,"reason":"drill"}`)
	json.Unmarshal(body, &got)
	if status != http.StatusOK || got.Version != 4 || got.State != "active" {
		t.Errorf("emergency after the removal: %d %s, want an active v4", status, body)
	}
	if problems, _ := storageProblems(t, p); problems != "" {
		t.Errorf("storage_problems after the removal: %s", problems)
	}
	if valid, _ := auditPage(t, p); !valid {
		t.Error("chain_valid = false: the removed v2 counts as vanished")
	}
	p.stop(t)
	if stdout, stderr, code := runKeyd(t, "", nil, "audit", "verify", "--file", filepath.Join(dir, "audit.log")); code != 0 {
		t.Errorf("keyd audit verify: exit %d\n%s%s", code, stdout, stderr)
	}
}
