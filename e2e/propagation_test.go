package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/testkeyd"
)

// gatedArgs: manual rotations, a 2s propagation delay, ecommerce expected,
// instances live for 30s; maxWait is --activation-max-wait.
func gatedArgs(maxWait string) []string {
	return []string{
		"--rotation-schedule", "@every 1h", "--propagation-delay", "2s",
		"--max-token-lifetime", "5s", "--clock-skew", "1s", "--jwks-max-age", "1s",
		"--expected-clients", "ecommerce", "--instance-window", "30s", "--activation-max-wait", maxWait,
	}
}

// idaFetch is one JWKS fetch as an IDA instance makes it: its status,
// ETag and number of keys (0 for a 304).
func idaFetch(t *testing.T, url, client, instance, inm string) (int, string, int) {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/.well-known/jwks.json", nil)
	req.Header.Set("Keyd-Client", client)
	req.Header.Set("Keyd-Instance", instance)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct{ Keys []json.RawMessage }
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, resp.Header.Get("ETag"), len(set.Keys)
}

type e2eKey struct {
	KID         string  `json:"kid"`
	Version     int     `json:"version"`
	State       string  `json:"state"`
	ActivatesAt string  `json:"activates_at"`
	RetiresAt   *string `json:"retires_at"`
}

func keysOf(t *testing.T, url, token string) map[int]e2eKey {
	t.Helper()
	var out struct{ Keys []e2eKey }
	if _, err := call(context.Background(), "GET", url+"/v1/keys", token, nil, &out); err != nil {
		t.Fatal(err)
	}
	m := map[int]e2eKey{}
	for _, k := range out.Keys {
		m[k.Version] = k
	}
	return m
}

func signedKID(t *testing.T, url, token string) string {
	t.Helper()
	var out struct{ KID string }
	if _, err := call(context.Background(), "POST", url+"/v1/sign", token, testClaims, &out); err != nil {
		t.Fatal(err)
	}
	return out.KID
}

func auditTypes(t *testing.T, url, token string) map[string][]string {
	t.Helper()
	var trail struct {
		Events []struct{ Type, Reason string }
	}
	if _, err := call(context.Background(), "GET", url+"/v1/audit", token, nil, &trail); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range trail.Events {
		out[e.Type] = append(out[e.Type], e.Reason)
	}
	return out
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// TestPropagationLocal: a lagging instance holds a new key back past its
// activates_at (it does not sign), its fetch releases it; the actual
// activation time shows in /v1/keys and the old key retires from it; the
// CLI shows what the key waits for; everything survives a restart; forged
// header values never break the JWKS.
func TestPropagationLocal(t *testing.T) {
	dir := t.TempDir()
	args := append([]string{"--data-dir", dir}, gatedArgs("1h")...)
	k := startKeyd(t, localTokens, args...)
	ctx := context.Background()
	_, oldETag, _ := idaFetch(t, k.URL, "ecommerce", "e1:1", "")
	idaFetch(t, k.URL, "ecommerce", "e2:1", "")
	oldKID := signedKID(t, k.URL, "e2e-signer-token-0123456789abcdef0123")
	if _, err := call(ctx, "POST", k.URL+"/v1/rotate", "e2e-admin-token-0123456789abcdef0123", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	recorded := parseTime(t, keysOf(t, k.URL, "e2e-auditor-token-0123456789abcdef0123")[2].ActivatesAt)
	waitUntil(t, 5*time.Second, "e1 is served the new key", func() bool {
		st, _, n := idaFetch(t, k.URL, "ecommerce", "e1:1", oldETag)
		return st == 200 && n == 2
	})
	// Observe for a while past activates_at: the lagging e2 holds the key
	// back (a fixed observation window: nothing happens to wait for).
	time.Sleep(time.Until(recorded.Add(2 * time.Second)))
	keys := keysOf(t, k.URL, "e2e-auditor-token-0123456789abcdef0123")
	if keys[2].State != "pending" || signedKID(t, k.URL, "e2e-signer-token-0123456789abcdef0123") != oldKID {
		t.Fatalf("the key activated or signed while e2 lags: %+v", keys[2])
	}
	out, err := exec.Command(keydBin, "keys", "--server", k.URL, "--token", "e2e-auditor-token-0123456789abcdef0123").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "waiting for ecommerce: 1 of 2 instances") {
		t.Errorf("keyd keys: %v\n%s", err, out)
	}
	out, err = exec.Command(keydBin, "propagation", "--server", k.URL, "--token", "e2e-admin-token-0123456789abcdef0123").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "e2:1") || !strings.Contains(string(out), "waiting") {
		t.Errorf("keyd propagation: %v\n%s", err, out)
	}

	// e2 fetches: the key activates.
	if st, _, n := idaFetch(t, k.URL, "ecommerce", "e2:1", oldETag); st != 200 || n != 2 {
		t.Fatalf("e2 fetch: %d, %d keys", st, n)
	}
	waitUntil(t, 5*time.Second, "e2's fetch releases the key", func() bool {
		return keysOf(t, k.URL, "e2e-auditor-token-0123456789abcdef0123")[2].State == "active"
	})
	keys = keysOf(t, k.URL, "e2e-auditor-token-0123456789abcdef0123")
	actual := parseTime(t, keys[2].ActivatesAt)
	if !actual.After(recorded.Add(time.Second)) || keys[1].RetiresAt == nil || parseTime(t, *keys[1].RetiresAt) != actual.Add(7*time.Second) {
		t.Errorf("actual activation %v (recorded %v); old key retires at %v, want actual + 7s", actual, recorded, deref(keys[1].RetiresAt))
	}
	if signedKID(t, k.URL, "e2e-signer-token-0123456789abcdef0123") != keys[2].KID {
		t.Error("the released key does not sign")
	}
	if r := auditTypes(t, k.URL, "e2e-auditor-token-0123456789abcdef0123")["propagation_confirmed"]; len(r) != 1 || r[0] != "client ecommerce confirmed by fetch" {
		t.Errorf("propagation_confirmed events: %q", r)
	}

	// A restart keeps the actual activation and the observations.
	k.Stop()
	k = startKeyd(t, localTokens, args...)
	if again := keysOf(t, k.URL, "e2e-auditor-token-0123456789abcdef0123")[2]; again.ActivatesAt != keys[2].ActivatesAt || again.State != "active" {
		t.Errorf("after a restart: %+v, want active from %s", again, keys[2].ActivatesAt)
	}
	var p struct {
		Clients []struct {
			Client    string
			Instances []struct{ Instance string }
		}
	}
	if _, err := call(ctx, "GET", k.URL+"/v1/propagation", "e2e-auditor-token-0123456789abcdef0123", nil, &p); err != nil || len(p.Clients) != 1 || len(p.Clients[0].Instances) != 2 {
		t.Errorf("observations after a restart: %+v %v", p, err)
	}
	forgedHeaders(t, k.URL)
}

func deref(s *string) string {
	if s == nil {
		return "null"
	}
	return *s
}

// forgedHeaders sends JWKS requests with header values outside the
// pattern, some no Go client would send (raw bytes on the socket): each is
// answered with the JWKS, and none is recorded.
func forgedHeaders(t *testing.T, url string) {
	t.Helper()
	addr := strings.TrimPrefix(url, "http://")
	for _, v := range []string{
		strings.Repeat("x", 65), "a b", "a;b", "\xff\xfe", "ünï", "a\x01b", "a/../../b", "",
		"ecommerce, notes", strings.Repeat("y", 8000),
	} {
		for _, hdr := range []string{"Keyd-Client: " + v + "\r\nKeyd-Instance: i1", "Keyd-Client: ecommerce\r\nKeyd-Instance: " + v} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n%s\r\nConnection: close\r\n\r\n", hdr)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("forged %q: %v", v, err)
			}
			body, _ := io.ReadAll(resp.Body)
			c.Close()
			if resp.StatusCode != 200 && resp.StatusCode != 400 || resp.StatusCode == 200 && !strings.Contains(string(body), `"keys"`) {
				t.Errorf("forged %q: %d %s", v, resp.StatusCode, body)
			}
			if resp.StatusCode == 400 && !strings.Contains(v, "\x01") {
				t.Errorf("forged %q refused by net/http: %d", v, resp.StatusCode) // only a control byte makes the request itself invalid
			}
		}
	}
	var p struct {
		Clients []struct{ Instances []struct{ Instance string } }
	}
	if _, err := call(context.Background(), "GET", url+"/v1/propagation", "e2e-auditor-token-0123456789abcdef0123", nil, &p); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // one flush interval: a recorded forgery would be stored by now
	if _, err := call(context.Background(), "GET", url+"/v1/propagation", "e2e-auditor-token-0123456789abcdef0123", nil, &p); err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Clients {
		for _, in := range c.Instances {
			if in.Instance != "e1:1" && in.Instance != "e2:1" {
				t.Errorf("a forged instance was recorded: %q", in.Instance)
			}
		}
	}
}

// TestPropagationMaxWaitLocal: nobody confirms; the key activates at
// activates_at + max wait with an activation_unconfirmed event naming the
// client.
func TestPropagationMaxWaitLocal(t *testing.T) {
	k := startKeyd(t, localTokens, append([]string{"--data-dir", t.TempDir()}, gatedArgs("3s")...)...)
	if _, err := call(context.Background(), "POST", k.URL+"/v1/rotate", "e2e-admin-token-0123456789abcdef0123", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	recorded := parseTime(t, keysOf(t, k.URL, "e2e-auditor-token-0123456789abcdef0123")[2].ActivatesAt)
	waitUntil(t, 15*time.Second, "the max wait activates the key", func() bool {
		return keysOf(t, k.URL, "e2e-auditor-token-0123456789abcdef0123")[2].State == "active"
	})
	if actual := parseTime(t, keysOf(t, k.URL, "e2e-auditor-token-0123456789abcdef0123")[2].ActivatesAt); actual.Before(recorded.Add(3 * time.Second)) {
		t.Errorf("activated at %v, before activates_at + max wait %v", actual, recorded.Add(3*time.Second))
	}
	if r := auditTypes(t, k.URL, "e2e-auditor-token-0123456789abcdef0123")["activation_unconfirmed"]; len(r) != 1 || !strings.Contains(r[0], "ecommerce") {
		t.Errorf("activation_unconfirmed events: %q", r)
	}
}

// TestPropagationVaultTwoReplicas: two replicas on one Vault; the lagging
// instance fetches from the other replica than the one that rotated; both
// hold the key back, both release it on that fetch, and agree on the
// actual activation time.
func TestPropagationVaultTwoReplicas(t *testing.T) {
	e := bootstrapVault(t, "ES256")
	args := append([]string{"--algorithm", "ES256"}, gatedArgs("1h")...)
	k1, k2 := e.start(t, e.v.Addr, args...), e.start(t, e.v.Addr, args...)
	_, etag, _ := idaFetch(t, k1.URL, "ecommerce", "e1:1", "")
	idaFetch(t, k2.URL, "ecommerce", "e2:1", "")
	if _, err := call(context.Background(), "POST", k1.URL+"/v1/rotate", e.admin, map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	recorded := parseTime(t, keysOf(t, k1.URL, e.auditor)[2].ActivatesAt)
	var dbg json.RawMessage
	waitUntil(t, 5*time.Second, "e1 is served the new key by replica 1", func() bool {
		st, _, n := idaFetch(t, k1.URL, "ecommerce", "e1:1", etag)
		return st == 200 && n == 2
	})
	time.Sleep(time.Until(recorded.Add(2 * time.Second))) // observe past activates_at
	for _, k := range []*testkeyd.Keyd{k1, k2} {
		if st := keysOf(t, k.URL, e.auditor)[2].State; st != "pending" {
			call(context.Background(), "GET", k.URL+"/v1/propagation", e.auditor, nil, &dbg)
			t.Fatalf("replica %s: the key is %s while e2 lags: %s", k.URL, st, dbg)
		}
	}
	waitUntil(t, 5*time.Second, "e2 is served the new key by replica 2", func() bool {
		st, _, n := idaFetch(t, k2.URL, "ecommerce", "e2:1", etag)
		return st == 200 && n == 2
	})
	waitUntil(t, 10*time.Second, "both replicas release the key", func() bool {
		return keysOf(t, k1.URL, e.auditor)[2].State == "active" && keysOf(t, k2.URL, e.auditor)[2].State == "active"
	})
	a, b := keysOf(t, k1.URL, e.auditor), keysOf(t, k2.URL, e.auditor)
	if a[2].ActivatesAt != b[2].ActivatesAt || deref(a[1].RetiresAt) != deref(b[1].RetiresAt) || !parseTime(t, a[2].ActivatesAt).After(recorded) {
		t.Errorf("replicas disagree or activated on time: %+v %+v vs %+v %+v (recorded %v)", a[2], a[1], b[2], b[1], recorded)
	}
	if out, err := auditVerifyVault(e); err != nil {
		t.Errorf("keyd audit verify --vault: %v\n%s", err, out)
	}
}

// TestPropagationStoreFaultsVault (issue 20, items 2 and 4, Vault KV): a
// malformed activation entry does not wedge keyd (it becomes ready, serves
// the JWKS, signs with the active key and reports the entry); a
// confirmation stored without its audit event (a crash between the two) is
// reported by keyd audit verify --vault, and the next start records the
// missing event.
func TestPropagationStoreFaultsVault(t *testing.T) {
	e := bootstrapVault(t, "ES256")
	args := append([]string{"--algorithm", "ES256"}, gatedArgs("1h")...)
	args = append(args, "--propagation-delay", "1h", "--jwks-max-age", "1m", "--instance-window", "2m")
	k := e.start(t, e.v.Addr, args...)
	if _, err := call(context.Background(), "POST", k.URL+"/v1/rotate", e.admin, map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	k.Stop()

	// Fault injection, with the root token: a malformed activation of the
	// pending v2 (it used to fail every lifecycle read: keyd never became
	// ready), and a confirmation whose event was lost to a crash.
	root := e.v.Client(t, e.v.RootToken)
	at := time.Now().Add(-2 * time.Minute).UTC().Truncate(time.Second)
	for p, data := range map[string]map[string]any{
		"keyd/data/propagation/activations/2":             {"version": "two", "at": "soon"},
		"keyd/data/propagation/confirmations/2/ecommerce": {"client": "ecommerce", "version": 2, "by": "admin", "at": at, "actor": "role:admin"},
	} {
		if _, err := root.Logical().Write(p, map[string]any{"data": data}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := auditVerifyVault(e)
	if err == nil || !strings.Contains(string(out), "propagation_confirmed of version 2 (client ecommerce confirmed by admin)") {
		t.Errorf("keyd audit verify --vault with a decision without its event: %v\n%s", err, out)
	}

	k = e.start(t, e.v.Addr, args...) // fails the test unless ready
	keys := keysOf(t, k.URL, e.auditor)
	if len(keys) != 2 || keys[2].State != "pending" {
		t.Errorf("keys after the restart: %+v, want v2 still pending", keys)
	}
	var sig struct{ KID string }
	if _, err := call(context.Background(), "POST", k.URL+"/v1/sign", e.lms, testClaims, &sig); err != nil || sig.KID != keys[1].KID {
		t.Errorf("sign: %v, kid %s, want the active v1 (%s)", err, sig.KID, keys[1].KID)
	}
	var ready struct {
		Storage []string `json:"storage_problems"`
	}
	call(context.Background(), "GET", k.URL+"/readyz", "", nil, &ready)
	if p := strings.Join(ready.Storage, "\n"); !strings.Contains(p, "propagation/activations/2") {
		t.Errorf("/readyz storage_problems do not report the malformed activation:\n%s", p)
	}
	if out, err := auditVerifyVault(e); err != nil {
		t.Errorf("keyd audit verify --vault after the start recorded the event: %v\n%s", err, out)
	}
}
