package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/openedx-keyd/keyd/internal/testkeyd"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
)

// haEnv is a bootstrapped 3-node Vault cluster with one token per role.
type haEnv struct {
	c                    *vaulttest.Cluster
	server, lms, auditor string
}

func bootstrapCluster(t *testing.T) *haEnv {
	t.Helper()
	c := vaulttest.StartCluster(t)
	leader, err := c.WaitLeader(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := keydVault(leader.Addr, c.RootToken, "bootstrap", "--algorithm", "RS512"); err != nil {
		t.Fatalf("keyd bootstrap: %v\n%s", err, out)
	}
	return &haEnv{c: c, server: c.Token(t, "keyd-server"), lms: c.Token(t, "keyd-lms-signer"), auditor: c.Token(t, "keyd-auditor")}
}

// startHA runs keyd on addrs (--vault-addrs), with keyd-server's token.
func (e *haEnv) start(t *testing.T, addrs []string, args ...string) *testkeyd.Keyd {
	t.Helper()
	return startKeyd(t, []string{"VAULT_TOKEN=" + e.server, "VAULT_ADDR="},
		append([]string{"--backend", "vault", "--vault-addrs", strings.Join(addrs, ",")}, args...)...)
}

// signResult is one sign request of a signLoad.
type signResult struct {
	at, done   time.Time
	replica    int
	status     int
	retryAfter string
	body       string
	token, kid string
}

// signLoad signs continuously through each replica at rate per second
// until stop is called, and returns every result.
func signLoad(urls []string, token string, rate int) (stop func() []signResult) {
	return signLoadVia(http.DefaultClient, urls, token, rate)
}

// signLoadVia is signLoad with the requests sent through client.
func signLoadVia(client *http.Client, urls []string, token string, rate int) (stop func() []signResult) {
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu  sync.Mutex
		out []signResult
		wg  sync.WaitGroup
	)
	body, _ := json.Marshal(testClaims)
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / time.Duration(rate))
			defer tick.Stop()
			var inner sync.WaitGroup
			defer inner.Wait()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				inner.Add(1)
				go func() {
					defer inner.Done()
					r := signResult{at: time.Now(), replica: i}
					req, _ := http.NewRequest("POST", u+"/v1/sign", bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+token)
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						r.body = err.Error()
					} else {
						raw, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						r.status, r.retryAfter, r.body = resp.StatusCode, resp.Header.Get("Retry-After"), string(raw)
						var ok struct{ Token, Kid string }
						if r.status == 200 && json.Unmarshal(raw, &ok) == nil {
							r.token, r.kid = ok.Token, ok.Kid
						}
					}
					r.done = time.Now()
					mu.Lock()
					out = append(out, r)
					mu.Unlock()
				}()
			}
		}()
	}
	return func() []signResult {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
		return out
	}
}

// jwksWatch fetches each replica's JWKS every 200 ms until stop, failing
// on anything but a 200, and keeps every key it saw.
type jwksWatch struct {
	mu   sync.Mutex
	keys map[string]jose.JSONWebKey
	bad  []string
	stop func()
}

func watchJWKS(urls []string) *jwksWatch { return watchJWKSVia(http.DefaultClient, urls) }

// watchJWKSVia is watchJWKS with the requests sent through client.
func watchJWKSVia(client *http.Client, urls []string) *jwksWatch {
	w := &jwksWatch{keys: map[string]jose.JSONWebKey{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	w.stop = func() { cancel(); wg.Wait() }
	for _, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var set jose.JSONWebKeySet
				status, err := callVia(context.Background(), client, "GET", u+"/.well-known/jwks.json", "", nil, &set)
				w.mu.Lock()
				if status != 200 {
					w.bad = append(w.bad, fmt.Sprintf("%s %s: %d %v", time.Now().Format("15:04:05.000"), u, status, err))
				}
				for _, k := range set.Keys {
					w.keys[k.KeyID] = k
				}
				w.mu.Unlock()
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	return w
}

// verifyAll checks that every 200 answer carries a token that verifies
// with a key some replica published under its kid.
func (w *jwksWatch) verifyAll(t *testing.T, results []signResult) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	bad := 0
	for _, r := range results {
		if r.status != 200 {
			continue
		}
		k, ok := w.keys[r.kid]
		jws, err := jose.ParseSignedCompact(r.token, []jose.SignatureAlgorithm{jose.RS512})
		if err == nil && ok {
			_, err = jws.Verify(k)
		} else if !ok {
			err = fmt.Errorf("kid %s never published", r.kid)
		}
		if err != nil && bad < 5 {
			t.Errorf("token signed at %s does not verify: %v", r.at.Format("15:04:05.000"), err)
			bad++
		}
	}
}

// failures returns the failed results, checking each is a JSON 503 with
// Retry-After.
func failures(t *testing.T, results []signResult) []signResult {
	t.Helper()
	var out []signResult
	for _, r := range results {
		if r.status == 200 {
			continue
		}
		out = append(out, r)
		var e struct{ Error, Message string }
		if r.status != 503 || r.retryAfter == "" || json.Unmarshal([]byte(r.body), &e) != nil || e.Error == "" {
			t.Errorf("sign at %s: %d Retry-After %q %s; want a JSON 503 with Retry-After", r.at.Format("15:04:05.000"), r.status, r.retryAfter, r.body)
		}
	}
	return out
}

func window(results []signResult, from, to time.Time) []signResult {
	var out []signResult
	for _, r := range results {
		if !r.at.Before(from) && r.at.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// Two keyd replicas on the standbys of a real 3-node Raft cluster, each
// signing about 40 times a second: a step-down fails no sign; kill -9 of
// the leader fails signs only within the election gap (JSON 503s with
// Retry-After), none after; every token verifies; the JWKS stays 200; after
// the killed node rejoins, the scheduled rotations made one version each,
// each with its record; the audit chain verifies; the replicas agree.
func TestVaultHAElections(t *testing.T) {
	began := time.Now()
	e := bootstrapCluster(t)
	leader := e.c.Leader()
	sb := e.c.Standbys()
	if leader == nil || len(sb) != 2 {
		t.Fatalf("leader %v, %d standbys", leader, len(sb))
	}
	lifecycle := []string{"--rotation-schedule", "@every 12s", "--propagation-delay", "3s",
		"--max-token-lifetime", "5s", "--clock-skew", "1s", "--jwks-max-age", "1s"}
	k1 := e.start(t, []string{sb[0].Addr, sb[1].Addr, leader.Addr}, lifecycle...)
	k2 := e.start(t, []string{sb[1].Addr, sb[0].Addr, leader.Addr}, lifecycle...)
	urls := []string{k1.URL, k2.URL}
	t.Logf("cluster and keyd ready after %v; leader %s", time.Since(began).Round(time.Millisecond), leader.ID)
	runStart := time.Now()
	watch := watchJWKS(urls)
	stop := signLoad(urls, e.lms, 40)

	time.Sleep(3 * time.Second)
	stepAt := time.Now()
	old := e.c.StepDown(t)
	for {
		if n := e.c.Leader(); n != nil && n != old {
			break
		}
		if time.Since(stepAt) > 30*time.Second {
			t.Fatal("no new leader after the step-down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stepGap := time.Since(stepAt)
	time.Sleep(5 * time.Second)

	killAt := time.Now()
	killed := e.c.KillLeader(t)
	for e.c.Leader() == nil {
		if time.Since(killAt) > 30*time.Second {
			t.Fatal("no new leader after kill -9")
		}
		time.Sleep(20 * time.Millisecond)
	}
	killGap := time.Since(killAt)
	electedAt := time.Now()
	time.Sleep(5 * time.Second)
	killed.Restart(t)
	e.c.WaitVoters(t, 3, 60*time.Second)
	time.Sleep(2 * time.Second)
	results := stop()
	watch.stop()
	elapsed := time.Since(runStart)

	// Failures: none through the step-down; within the kill -9 gap only.
	all := failures(t, results)
	stepFails := window(all, stepAt.Add(-time.Second), killAt)
	// A sign that began up to its 2s budget before the new leader was
	// known may still fail; after that, none.
	killFails := window(all, killAt.Add(-time.Second), electedAt.Add(500*time.Millisecond))
	late := window(all, electedAt.Add(500*time.Millisecond), time.Now())
	early := window(all, time.Time{}, stepAt.Add(-time.Second))
	t.Logf("%d signs in %v; step-down: new leader after %v, %d failed; kill -9 %s: new leader after %v, %d failed in the gap, %d after",
		len(results), elapsed.Round(time.Second), stepGap.Round(time.Millisecond), len(stepFails), killed.ID, killGap.Round(time.Millisecond), len(killFails), len(late))
	if len(early) > 0 || len(stepFails) > 0 || len(late) > 0 {
		for _, r := range append(append(early, stepFails...), late...) {
			t.Errorf("sign at %s (replica %d) failed outside the election gap: %d %s", r.at.Format("15:04:05.000"), r.replica+1, r.status, r.body)
		}
		for i, k := range []*testkeyd.Keyd{k1, k2} {
			t.Logf("replica %d errors:\n%s", i+1, grepLines(k.Logs(), "unavailable", 10))
		}
	}
	if len(results)-len(all) < len(results)*8/10 {
		t.Errorf("only %d of %d signs succeeded", len(results)-len(all), len(results))
	}
	watch.verifyAll(t, results)
	for _, b := range watch.bad {
		t.Errorf("JWKS not 200: %s", b)
	}

	// One version per scheduled rotation, each with its record.
	root := e.c.Client(t, e.c.RootToken)
	sec, err := root.Logical().Read("transit/keys/keyd-jwt")
	if err != nil {
		t.Fatal(err)
	}
	latest, _ := sec.Data["latest_version"].(json.Number).Int64()
	if most := int64(time.Since(runStart)/(12*time.Second)) + 3; latest > most {
		t.Errorf("%d versions after %v of rotations every 12s; at most %d expected", latest, time.Since(runStart).Round(time.Second), most)
	}
	minAvail, _ := sec.Data["min_available_version"].(json.Number).Int64()
	for v := max(minAvail, 1); v <= latest; v++ {
		rec, err := root.Logical().Read(fmt.Sprintf("keyd/data/records/%d", v))
		if err != nil || rec == nil || rec.Data["data"] == nil {
			t.Errorf("version %d has no lifecycle record: %v", v, err)
		}
	}
	t.Logf("versions: %d (min available %d)", latest, minAvail)

	// Both replicas publish the same keys; readiness is back.
	var a, b jose.JSONWebKeySet
	for range 50 {
		call(context.Background(), "GET", k1.URL+"/.well-known/jwks.json", "", nil, &a)
		call(context.Background(), "GET", k2.URL+"/.well-known/jwks.json", "", nil, &b)
		if kids(a) == kids(b) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if kids(a) != kids(b) {
		t.Errorf("replicas publish different keys: %s vs %s", kids(a), kids(b))
	}
	for _, u := range urls {
		if status, err := call(context.Background(), "GET", u+"/readyz", "", nil, nil); status != 200 {
			t.Errorf("%s/readyz after the run: %d %v", u, status, err)
		}
	}
	leaderNow, _ := e.c.WaitLeader(10 * time.Second)
	if out, err := keydVault(leaderNow.Addr, e.auditor, "audit", "verify", "--vault"); err != nil {
		t.Errorf("keyd audit verify --vault: %v\n%s", err, out)
	}
	t.Logf("whole test: %v", time.Since(began).Round(time.Second))
}

// The address list: the node keyd talks to is killed (a standby: no
// election); keyd moves on to the next address without a restart.
func TestVaultHAAddressList(t *testing.T) {
	e := bootstrapCluster(t)
	leader := e.c.Leader()
	sb := e.c.Standbys()
	k := e.start(t, []string{sb[0].Addr, leader.Addr, sb[1].Addr})
	stop := signLoad([]string{k.URL}, e.lms, 20)
	time.Sleep(2 * time.Second)
	killAt := time.Now()
	sb[0].Kill()
	time.Sleep(3 * time.Second)
	results := stop()
	all := failures(t, results)
	// At most the signs in flight when the node died fail.
	if late := window(all, killAt.Add(500*time.Millisecond), time.Now()); len(late) > 0 {
		t.Errorf("%d signs failed after keyd should have moved on, first: %d %s", len(late), late[0].status, late[0].body)
	}
	t.Logf("%d signs, %d failed (kill of %s, the address keyd used)", len(results), len(all), sb[0].ID)
	if !strings.Contains(k.Logs(), "moving on") {
		t.Error("keyd did not log the move to another address")
	}
}

func grepLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && len(out) < n {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// AppRole: keyd-server logs in with a token TTL of 3 s (renewed up to 8 s,
// then a new login) and keeps signing and rotating for several TTLs; its
// tokens revoked while its secret ID is gone, /readyz reports the failed
// login while it lasts; with a new secret ID it logs in again and works.
func TestVaultAppRoleLogin(t *testing.T) {
	e := bootstrapVault(t, "RS512")
	root := e.v.Client(t, e.v.RootToken)
	out, err := keydVault(e.v.Addr, e.v.RootToken, "bootstrap", "--algorithm", "RS512", "--approle")
	if err != nil || !strings.Contains(string(out), "role-id") || !strings.Contains(string(out), "secret-id") {
		t.Fatalf("keyd bootstrap --approle: %v\n%s", err, out)
	}
	role := "auth/approle/role/keyd-server"
	if _, err := root.Logical().Write(role, map[string]any{"token_policies": "keyd-server", "token_ttl": "3s", "token_max_ttl": "8s"}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().Read(role + "/role-id")
	if err != nil {
		t.Fatal(err)
	}
	newSecret := func() string {
		sec, err := root.Logical().Write(role+"/secret-id", nil)
		if err != nil {
			t.Fatal(err)
		}
		return sec.Data["secret_id"].(string)
	}
	file := t.TempDir() + "/secret-id"
	secret := newSecret()
	if err := os.WriteFile(file, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	k := startKeyd(t, []string{"VAULT_ADDR=" + e.v.Addr, "VAULT_TOKEN=", "KEYD_VAULT_AUTH=approle",
		"KEYD_VAULT_ROLE_ID=" + rid.Data["role_id"].(string), "KEYD_VAULT_SECRET_ID_FILE=" + file},
		"--backend", "vault", "--rotation-schedule", "@every 4s", "--propagation-delay", "3s",
		"--max-token-lifetime", "5s", "--clock-skew", "1s", "--jwks-max-age", "1s")
	ctx := context.Background()
	type ready struct {
		Ready        bool
		LoginProblem string `json:"backend_login_problem"`
	}
	for i := range 30 { // 15 s: five TTLs, and a new login after 8 s
		if _, err := call(ctx, "POST", k.URL+"/v1/sign", e.lms, testClaims, nil); err != nil {
			t.Fatalf("sign after %v: %v", time.Duration(i)*500*time.Millisecond, err)
		}
		if i == 20 {
			if _, err := call(ctx, "POST", k.URL+"/v1/rotate", e.admin, map[string]any{"reason": "approle"}, nil); err != nil {
				t.Fatalf("rotate with keyd's approle token: %v", err)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	var r ready
	if status, err := call(ctx, "GET", k.URL+"/readyz", "", nil, &r); status != 200 || r.LoginProblem != "" {
		t.Fatalf("readyz: %d %+v %v", status, r, err)
	}
	if got := strings.Count(k.Logs(), "vault approle login"); got < 2 {
		t.Errorf("%d approle logins in 15 s of 8 s max TTLs; want a new login", got)
	}

	// Revoked, and no secret ID to log in with: /readyz says so.
	if _, err := root.Logical().Write(role+"/secret-id/destroy", map[string]any{"secret_id": secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("sys/leases/revoke-prefix/auth/approle/login", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for r.LoginProblem == "" {
		if time.Now().After(deadline) {
			t.Fatal("/readyz does not report the failed login")
		}
		time.Sleep(200 * time.Millisecond)
		_ = getReadyz(k.URL, &r)
	}
	t.Logf("while the login fails, /readyz says: %s", r.LoginProblem)

	// A new secret ID: keyd logs in again and works.
	if err := os.WriteFile(file, []byte(newSecret()), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(40 * time.Second)
	for {
		r = ready{}
		status := getReadyz(k.URL, &r)
		if status == 200 && r.LoginProblem == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new login with the new secret ID: %d %+v", status, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := call(ctx, "POST", k.URL+"/v1/rotate", e.admin, map[string]any{"reason": "after re-login"}, nil); err != nil {
		t.Errorf("rotate after the new login: %v", err)
	}
	if out, err := auditVerifyVault(e); err != nil {
		t.Errorf("keyd audit verify --vault: %v\n%s", err, out)
	}
}

// getReadyz decodes /readyz whatever its status, and returns the status.
func getReadyz(url string, out any) int { return getReadyzVia(http.DefaultClient, url, out) }

// getReadyzVia is getReadyz through client.
func getReadyzVia(client *http.Client, url string, out any) int {
	resp, err := client.Get(url + "/readyz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(out)
	return resp.StatusCode
}
