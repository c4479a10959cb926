//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/openedx-keyd/keyd/internal/testkeyd"
	"github.com/openedx-keyd/keyd/internal/testnet"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
)

// Network partitions (issue 20 item 8): packets dropped, not refused. Each
// Vault node and each keyd replica is a host of its own (a network
// namespace on a private bridge, internal/testnet); a cut drops the packets
// between two hosts in the middle of the network, so connects hang and
// answers vanish, as kill -9 and step-down never show.
//
// The lifecycle runs on second-scale settings (a rotation every 12 s, the
// snapshot stale 2 s after its publication) and keyd's default sign budget
// (--sign-timeout 2s).
const signBudget = 2 * time.Second

var partitionLifecycle = []string{"--rotation-schedule", "@every 12s", "--propagation-delay", "3s",
	"--max-token-lifetime", "5s", "--clock-skew", "1s", "--jwks-max-age", "1s"}

// partEnv is a 3-node Raft cluster and two keyd hosts on one private net.
type partEnv struct {
	net    *testnet.Net
	vault  []*testnet.Host // vault[i] runs c.Nodes[i]
	keyd   []*testnet.Host
	c      *vaulttest.Cluster
	client *http.Client // the test process's own connections
	began  time.Time

	server, lms, auditor string
}

func startPartitionEnv(t *testing.T) *partEnv {
	t.Helper()
	n := testnet.New(t)
	e := &partEnv{net: n, client: n.Client(), began: time.Now()}
	t.Cleanup(e.client.CloseIdleConnections)
	var ips []string
	for i := range 3 {
		h := n.AddHost(fmt.Sprintf("vault%d", i+1))
		e.vault = append(e.vault, h)
		ips = append(ips, h.IP)
	}
	e.keyd = []*testnet.Host{n.AddHost("keyd1"), n.AddHost("keyd2")}
	e.c = vaulttest.StartClusterWith(t, vaulttest.ClusterOptions{
		IPs: ips, Dial: n.Dial,
		Wrap: func(i int, argv []string) []string { return e.vault[i].Wrap(argv) },
	})
	leader, err := e.c.WaitLeader(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.keydCLI(leader, e.c.RootToken, "bootstrap", "--algorithm", "RS512"); err != nil {
		t.Fatalf("keyd bootstrap: %v\n%s", err, out)
	}
	e.server, e.lms, e.auditor = e.c.Token(t, "keyd-server"), e.c.Token(t, "keyd-lms-signer"), e.c.Token(t, "keyd-auditor")
	t.Logf("cluster on %v ready after %v", ips, time.Since(e.began).Round(time.Millisecond))
	return e
}

// keydCLI runs the keyd CLI on the test process's own host against node.
func (e *partEnv) keydCLI(node *vaulttest.Node, token string, args ...string) ([]byte, error) {
	cmd := e.net.Self().Command(append([]string{keydBin}, args...)...)
	cmd.Env = append(cmd.Environ(), "VAULT_ADDR="+node.Addr, "VAULT_TOKEN="+token)
	return cmd.CombinedOutput()
}

// host is the host that runs node.
func (e *partEnv) host(node *vaulttest.Node) *testnet.Host {
	for i, n := range e.c.Nodes {
		if n == node {
			return e.vault[i]
		}
	}
	panic("unknown node")
}

// startKeyd runs replica i (0 or 1) on its host with addrs (--vault-addrs).
func (e *partEnv) startKeyd(t *testing.T, i int, addrs ...*vaulttest.Node) *testkeyd.Keyd {
	t.Helper()
	var list []string
	for _, n := range addrs {
		list = append(list, n.Addr)
	}
	h := e.keyd[i]
	return testkeyd.StartWith(t, testkeyd.Options{Listen: h.IP + ":8080", Wrap: h.Wrap, Client: e.client}, keydBin,
		[]string{"VAULT_TOKEN=" + e.server, "VAULT_ADDR="},
		append([]string{"--backend", "vault", "--vault-addrs", strings.Join(list, ",")}, partitionLifecycle...)...)
}

// roles returns the leader and the two standbys.
func (e *partEnv) roles(t *testing.T) (leader *vaulttest.Node, sb []*vaulttest.Node) {
	t.Helper()
	e.c.WaitStandbys(t, 2, 60*time.Second)
	leader, sb = e.c.Leader(), e.c.Standbys()
	if leader == nil || len(sb) != 2 {
		t.Fatalf("leader %v, %d standbys", leader, len(sb))
	}
	return leader, sb
}

// readySample is one /readyz answer.
type readySample struct {
	at     time.Time
	status int
	up     bool
	stale  bool
}

// watchReadyz polls url's /readyz every 100 ms until stop.
func watchReadyz(client *http.Client, url string) (stop func() []readySample) {
	ctx, cancel := context.WithCancel(context.Background())
	var out []readySample
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var r struct {
				Lifecycle struct {
					BackendUp bool `json:"backend_up"`
					Stale     bool `json:"stale"`
				}
			}
			at := time.Now()
			status := getReadyzVia(client, url, &r)
			out = append(out, readySample{at: at, status: status, up: r.Lifecycle.BackendUp, stale: r.Lifecycle.Stale})
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() []readySample { cancel(); <-done; return out }
}

// checkLatency: every sign answered within the budget + 0.5 s.
func checkLatency(t *testing.T, results []signResult) {
	t.Helper()
	bad := 0
	for _, r := range results {
		if took := r.done.Sub(r.at); took > signBudget+500*time.Millisecond || r.status == 0 {
			if bad < 5 {
				t.Errorf("sign at %s (replica %d): %d after %v; want an answer within %v", r.at.Format("15:04:05.000"), r.replica+1, r.status, took.Round(time.Millisecond), signBudget+500*time.Millisecond)
			}
			bad++
		}
	}
}

func ofReplica(results []signResult, i int) []signResult {
	var out []signResult
	for _, r := range results {
		if r.replica == i {
			out = append(out, r)
		}
	}
	return out
}

func succeeded(results []signResult) []signResult {
	var out []signResult
	for _, r := range results {
		if r.status == 200 {
			out = append(out, r)
		}
	}
	return out
}

func stamp(t time.Time) string { return t.Format("15:04:05.000") }

// One cluster, three partitions in turn, each with two fresh keyd replicas
// signing 20 times a second and their JWKS fetched every 200 ms.
func TestVaultPartitions(t *testing.T) {
	e := startPartitionEnv(t)
	t.Run("keyd cut off from every node", func(t *testing.T) { partitionKeydFromAll(t, e) })
	t.Run("keyd cut off from the leader", func(t *testing.T) { partitionKeydFromLeader(t, e) })
	t.Run("leader isolated from the other nodes", func(t *testing.T) { partitionLeader(t, e) })
	t.Logf("whole test: %v", time.Since(e.began).Round(time.Second))
}

// (a) Replica 1 is cut off from every Vault node under load: each sign
// answers within --sign-timeout + 0.5 s as a JSON 503 with Retry-After,
// its JWKS is served throughout, its /readyz reports the backend down and
// then the stale snapshot (503); within 5 s of the heal it signs again and
// is ready, without a restart. Replica 2 is not cut and fails nothing.
func partitionKeydFromAll(t *testing.T, e *partEnv) {
	leader, sb := e.roles(t)
	k1 := e.startKeyd(t, 0, sb[0], sb[1], leader)
	k2 := e.startKeyd(t, 1, sb[1], sb[0], leader)
	urls := []string{k1.URL, k2.URL}
	watch := watchJWKSVia(e.client, urls)
	stop := signLoadVia(e.client, urls, e.lms, 20)
	time.Sleep(2 * time.Second)

	readyz := watchReadyz(e.client, k1.URL)
	cutAt := time.Now()
	for _, h := range e.vault {
		e.net.Cut(e.keyd[0], h)
	}
	time.Sleep(6 * time.Second)
	healAt := time.Now()
	e.net.Heal()
	deadline := healAt.Add(10 * time.Second)
	var ready time.Time
	for ready.IsZero() && time.Now().Before(deadline) {
		var r any
		if getReadyzVia(e.client, k1.URL, &r) == 200 {
			ready = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	results := stop()
	samples := readyz()
	watch.stop()

	checkLatency(t, results)
	all := failures(t, results) // each a JSON 503 with Retry-After
	r1, r2 := ofReplica(results, 0), ofReplica(results, 1)
	cut := window(ofReplica(all, 0), cutAt.Add(time.Second), healAt)
	if len(cut) == 0 {
		t.Error("no sign of replica 1 failed during the cut: the cut did not take")
	}
	if f := ofReplica(all, 1); len(f) > 0 {
		t.Errorf("%d signs of replica 2 (not cut) failed, first at %s: %d %s", len(f), stamp(f[0].at), f[0].status, f[0].body)
	}
	before := window(ofReplica(all, 0), time.Time{}, cutAt)
	after := window(ofReplica(all, 0), healAt.Add(5*time.Second), time.Now())
	for _, r := range append(before, after...) {
		t.Errorf("sign at %s (replica 1) failed outside the cut and its 5 s recovery: %d %s", stamp(r.at), r.status, r.body)
	}
	firstOK := succeeded(window(r1, healAt, time.Now()))
	switch {
	case len(firstOK) == 0:
		t.Error("replica 1 signed nothing after the heal")
	case firstOK[0].done.Sub(healAt) > 5*time.Second:
		t.Errorf("replica 1 signed again %v after the heal; want within 5 s", firstOK[0].done.Sub(healAt).Round(time.Millisecond))
	}
	if ready.IsZero() || ready.Sub(healAt) > 5*time.Second {
		t.Errorf("replica 1 /readyz 200 again at %v after the heal; want within 5 s", ready.Sub(healAt).Round(time.Millisecond))
	}
	// /readyz said so: the backend down, then the snapshot stale (503).
	var down, stale time.Time
	for _, s := range samples {
		if s.at.After(cutAt) && s.at.Before(healAt) {
			if !s.up && down.IsZero() {
				down = s.at
			}
			if s.status == 503 && s.stale && stale.IsZero() {
				stale = s.at
			}
		}
	}
	if down.IsZero() || stale.IsZero() {
		t.Errorf("/readyz of replica 1 during the cut: backend down at %v, stale 503 at %v; want both", down, stale)
	}
	for _, b := range watch.bad {
		t.Errorf("JWKS not 200: %s", b)
	}
	watch.verifyAll(t, results)
	t.Logf("replica 1: %d signs, %d failed (%d during the cut); /readyz backend down %v and stale %v after the cut, 200 %v after the heal, first sign %v after the heal; replica 2: %d signs",
		len(r1), len(ofReplica(all, 0)), len(cut), down.Sub(cutAt).Round(time.Millisecond), stale.Sub(cutAt).Round(time.Millisecond),
		ready.Sub(healAt).Round(time.Millisecond), firstOKAfter(firstOK, healAt), len(r2))
}

func firstOKAfter(ok []signResult, t time.Time) time.Duration {
	if len(ok) == 0 {
		return -1
	}
	return ok[0].done.Sub(t).Round(time.Millisecond)
}

// (b) Both replicas are cut off from the leader only; replica 1 prefers
// the leader. It moves to a standby within each request's budget (no sign
// fails after one budget past the cut; each answers within the budget +
// 0.5 s) and back to the leader once the cut heals.
func partitionKeydFromLeader(t *testing.T, e *partEnv) {
	leader, sb := e.roles(t)
	k1 := e.startKeyd(t, 0, leader, sb[0], sb[1])
	k2 := e.startKeyd(t, 1, sb[0], leader, sb[1])
	urls := []string{k1.URL, k2.URL}
	watch := watchJWKSVia(e.client, urls)
	stop := signLoadVia(e.client, urls, e.lms, 20)
	time.Sleep(2 * time.Second)
	cutAt := time.Now()
	for _, k := range e.keyd {
		e.net.Cut(k, e.host(leader))
	}
	time.Sleep(6 * time.Second)
	healAt := time.Now()
	e.net.Heal()
	var backAt time.Time
	for backAt.IsZero() && time.Since(healAt) < 10*time.Second {
		if strings.Contains(k1.Logs(), `"msg":"vault address healthy again; moving back"`) {
			backAt = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	results := stop()
	watch.stop()
	if backAt.IsZero() {
		t.Error("replica 1 did not move back to the leader within 10 s of the heal")
	}

	checkLatency(t, results)
	all := failures(t, results)
	if late := window(all, cutAt.Add(signBudget+500*time.Millisecond), time.Now()); len(late) > 0 {
		for _, r := range late[:min(5, len(late))] {
			t.Errorf("sign at %s (replica %d) failed after keyd should have left the leader: %d %s", stamp(r.at), r.replica+1, r.status, r.body)
		}
	}
	if !strings.Contains(k1.Logs(), "moving on") {
		t.Error("replica 1 did not log its move away from the leader")
	}
	for _, b := range watch.bad {
		t.Errorf("JWKS not 200: %s", b)
	}
	watch.verifyAll(t, results)
	for _, u := range urls {
		var r any
		if status := getReadyzVia(e.client, u, &r); status != 200 {
			t.Errorf("%s/readyz after the run: %d %v", u, status, r)
		}
	}
	slowest := time.Duration(0)
	for _, r := range window(results, cutAt, healAt) {
		slowest = max(slowest, r.done.Sub(r.at))
	}
	t.Logf("%d signs, %d failed (%d in the first %v of the cut); slowest sign during the cut %v; back on the leader %v after the heal",
		len(results), len(all), len(window(all, cutAt.Add(-time.Second), cutAt.Add(signBudget+500*time.Millisecond))), signBudget+500*time.Millisecond,
		slowest.Round(time.Millisecond), backAt.Sub(healAt).Round(time.Millisecond))
}

// leaderLog polls which nodes answer as active every 50 ms.
type leaderLog struct {
	mu      sync.Mutex
	samples []leaderSample
	stop    func()
}

type leaderSample struct {
	at     time.Time
	active []*vaulttest.Node
}

func watchLeaders(c *vaulttest.Cluster) *leaderLog {
	l := &leaderLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	l.stop = func() { cancel(); <-done }
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var active []*vaulttest.Node
			var wg sync.WaitGroup
			var mu sync.Mutex
			for _, n := range c.Nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if n.Health() == 200 {
						mu.Lock()
						active = append(active, n)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			l.mu.Lock()
			// Stamped when the answers are in: a check sent just before a
			// cut may get its answer dropped by it.
			l.samples = append(l.samples, leaderSample{at: time.Now(), active: active})
			l.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return l
}

// gaps are the intervals, from `from` on, during which no node that the
// rest of the cluster could follow was active (isolated, while cut, is
// the node cut off from the others until healAt).
func (l *leaderLog) gaps(from, healAt time.Time, isolated *vaulttest.Node) [][2]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [][2]time.Time
	var start time.Time
	for _, s := range l.samples {
		if s.at.Before(from) {
			continue
		}
		led := false
		for _, n := range s.active {
			if n != isolated || !s.at.Before(healAt) {
				led = true
			}
		}
		switch {
		case !led && start.IsZero():
			start = s.at
		case led && !start.IsZero():
			out = append(out, [2]time.Time{start, s.at})
			start = time.Time{}
		}
	}
	if !start.IsZero() {
		out = append(out, [2]time.Time{start, time.Now()})
	}
	return out
}

// (c) The leader is cut off from the other two nodes (keyd reaches every
// node): the two elect a new leader; signs fail only within the election
// gap (at most 10 s), each a JSON 503 with Retry-After within the budget +
// 0.5 s; after the heal the old leader rejoins; the scheduled rotations
// made one version each, each with its record; the audit chain verifies;
// the replicas publish the same keys and are ready.
func partitionLeader(t *testing.T, e *partEnv) {
	leader, sb := e.roles(t)
	k1 := e.startKeyd(t, 0, sb[0], sb[1], leader)
	k2 := e.startKeyd(t, 1, sb[1], sb[0], leader)
	urls := []string{k1.URL, k2.URL}
	leaders := watchLeaders(e.c)
	watch := watchJWKSVia(e.client, urls)
	stop := signLoadVia(e.client, urls, e.lms, 20)
	time.Sleep(3 * time.Second)

	cutAt := time.Now()
	e.net.Cut(e.host(leader), e.host(sb[0]))
	e.net.Cut(e.host(leader), e.host(sb[1]))
	waitUntil(t, 30*time.Second, "a new leader among the two connected nodes", func() bool {
		return sb[0].Health() == 200 || sb[1].Health() == 200
	})
	electedAt := time.Now()
	time.Sleep(5 * time.Second)
	healAt := time.Now()
	e.net.Heal()
	e.c.WaitVoters(t, 3, 60*time.Second)
	time.Sleep(3 * time.Second)
	results := stop()
	watch.stop()
	leaders.stop()

	checkLatency(t, results)
	all := failures(t, results)
	gaps := leaders.gaps(cutAt.Add(-time.Second), healAt, leader)
	var outside []signResult
	for _, r := range all {
		in := false
		for _, g := range gaps {
			// A sign that began up to a second before the gap (in flight
			// when the node was cut) may fail; none after it ended.
			if !r.at.Before(g[0].Add(-time.Second)) && r.at.Before(g[1].Add(500*time.Millisecond)) {
				in = true
			}
		}
		if !in {
			outside = append(outside, r)
		}
	}
	for _, r := range outside[:min(5, len(outside))] {
		t.Errorf("sign at %s (replica %d) failed outside an election gap: %d %s", stamp(r.at), r.replica+1, r.status, r.body)
	}
	var gapText []string
	for _, g := range gaps {
		gapText = append(gapText, fmt.Sprintf("%s+%v", g[0].Sub(cutAt).Round(time.Millisecond), g[1].Sub(g[0]).Round(time.Millisecond)))
		if g[1].Sub(g[0]) > 10*time.Second {
			t.Errorf("an election gap of %v; want at most 10 s", g[1].Sub(g[0]).Round(time.Millisecond))
		}
	}
	if len(results)-len(all) < len(results)*7/10 {
		t.Errorf("only %d of %d signs succeeded", len(results)-len(all), len(results))
	}
	watch.verifyAll(t, results)
	for _, b := range watch.bad {
		t.Errorf("JWKS not 200: %s", b)
	}
	t.Logf("%d signs, %d failed; new leader %v after the cut; gaps without a leader (start after the cut + length): %s",
		len(results), len(all), electedAt.Sub(cutAt).Round(time.Millisecond), strings.Join(gapText, ", "))

	e.checkLifecycle(t, urls)
}

// checkLifecycle: one version per scheduled rotation since the first
// replica started, each with its record; both replicas publish the same
// keys and are ready; the audit chain verifies.
func (e *partEnv) checkLifecycle(t *testing.T, urls []string) {
	t.Helper()
	leader, err := e.c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	root := leader.Client(e.c.RootToken)
	sec, err := root.Logical().Read("transit/keys/keyd-jwt")
	if err != nil {
		t.Fatal(err)
	}
	latest, _ := sec.Data["latest_version"].(json.Number).Int64()
	if most := int64(time.Since(e.began)/(12*time.Second)) + 3; latest > most {
		t.Errorf("%d versions after %v of rotations every 12s; at most %d expected", latest, time.Since(e.began).Round(time.Second), most)
	}
	minAvail, _ := sec.Data["min_available_version"].(json.Number).Int64()
	for v := max(minAvail, 1); v <= latest; v++ {
		rec, err := root.Logical().Read(fmt.Sprintf("keyd/data/records/%d", v))
		if err != nil || rec == nil || rec.Data["data"] == nil {
			t.Errorf("version %d has no lifecycle record: %v", v, err)
		}
	}
	var a, b jose.JSONWebKeySet
	for range 50 {
		callVia(context.Background(), e.client, "GET", urls[0]+"/.well-known/jwks.json", "", nil, &a)
		callVia(context.Background(), e.client, "GET", urls[1]+"/.well-known/jwks.json", "", nil, &b)
		if kids(a) == kids(b) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if kids(a) != kids(b) {
		t.Errorf("replicas publish different keys: %s vs %s", kids(a), kids(b))
	}
	for _, u := range urls {
		var r any
		if status := getReadyzVia(e.client, u, &r); status != 200 {
			t.Errorf("%s/readyz after the run: %d %v", u, status, r)
		}
	}
	if out, err := e.keydCLI(leader, e.auditor, "audit", "verify", "--vault"); err != nil {
		t.Errorf("keyd audit verify --vault: %v\n%s", err, out)
	}
	t.Logf("versions: %d (min available %d)", latest, minAvail)
}
