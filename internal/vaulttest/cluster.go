package vaulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Cluster is a real 3-node Vault cluster with integrated (Raft) storage on
// loopback: three `bin/vault server -config` processes joined with
// retry_join, performance_multiplier = 1 (Vault's production timing),
// initialized with one key share and unsealed. Unlike a dev server, it
// keeps its data across a node's restart.
type Cluster struct {
	Nodes []*Node
	// RootToken is the initial root token, UnsealKey the one key share.
	RootToken, UnsealKey string

	bin  string
	dir  string
	opts ClusterOptions
	// health carries the test's own sys/health checks.
	health http.RoundTripper
}

// ClusterOptions places a Cluster's nodes. The zero value is three
// processes on loopback, each on free ports.
type ClusterOptions struct {
	// IPs, when set, gives each node an address of its own (a test host):
	// the API listens on IP:8200 and the cluster port on IP:8201.
	IPs []string
	// Wrap, when set, returns the command line that runs argv as node i
	// (e.g. in the node's network namespace); it must exec argv, so that
	// the process is Vault's own.
	Wrap func(i int, argv []string) []string
	// Dial, when set, makes the test's own connections to the nodes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Node is one Vault server of a Cluster.
type Node struct {
	// ID is node1..node3; Addr its API URL, http://127.0.0.1:<port>.
	ID, Addr string

	c       *Cluster
	config  string
	logFile string
	cmd     *exec.Cmd
	done    chan struct{}
}

// StartCluster starts, initializes and unseals a 3-node cluster and waits
// until it has a leader and two unsealed standbys. Every process is killed
// when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartClusterWith(t, ClusterOptions{})
}

// StartClusterWith is StartCluster with the nodes placed as opts says.
func StartClusterWith(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if len(opts.IPs) != 0 && len(opts.IPs) != 3 {
		t.Fatalf("vaulttest: %d node addresses, want 3", len(opts.IPs))
	}
	bin, err := existingBinary()
	if err != nil {
		failOrSkip(t, err)
	}
	dir, err := os.MkdirTemp("", "vaultcluster-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{bin: bin, dir: dir, opts: opts, health: http.DefaultTransport}
	if opts.Dial != nil {
		c.health = &http.Transport{DialContext: opts.Dial}
	}
	t.Cleanup(func() { c.cleanup(t) })
	if err := c.configure(); err != nil {
		t.Fatal(err)
	}
	if err := c.boot(); err != nil {
		t.Fatal(err)
	}
	if err := c.initialize(); err != nil {
		t.Fatal(err)
	}
	c.WaitVoters(t, 3, 60*time.Second)
	return c
}

// cleanup kills every node, logs their tails when the test failed and
// removes the cluster's directory.
func (c *Cluster) cleanup(t testing.TB) {
	for _, n := range c.Nodes {
		n.Kill()
	}
	if t.Failed() {
		for _, n := range c.Nodes {
			t.Logf("vault %s log tail:\n%s", n.ID, tail(n.logFile, 3000))
		}
	}
	os.RemoveAll(c.dir)
}

// configure picks each node's address (three free port pairs on
// loopback, or port 8200 on each of ClusterOptions.IPs) and writes each
// node's configuration, every node joining the three.
func (c *Cluster) configure() error {
	hosts := make([]string, 3)
	ports := make([]int, 3)
	for i := range ports {
		if len(c.opts.IPs) != 0 {
			hosts[i], ports[i] = c.opts.IPs[i], 8200
			continue
		}
		var err error
		hosts[i] = "127.0.0.1"
		if ports[i], err = freePortPair(); err != nil {
			return err
		}
	}
	var joins strings.Builder
	for i, p := range ports {
		fmt.Fprintf(&joins, "  retry_join {\n    leader_api_addr = \"http://%s:%d\"\n  }\n", hosts[i], p)
	}
	for i, p := range ports {
		n := &Node{ID: "node" + strconv.Itoa(i+1), Addr: "http://" + net.JoinHostPort(hosts[i], strconv.Itoa(p)), c: c}
		if err := n.writeConfig(filepath.Join(c.dir, n.ID), hosts[i], p, joins.String()); err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, n)
	}
	return nil
}

// writeConfig writes the node's vault.hcl in nd (its API on host:port, its
// cluster address on host:port+1), with its data directory beside it.
func (n *Node) writeConfig(nd, host string, port int, joins string) error {
	if err := os.MkdirAll(filepath.Join(nd, "data"), 0o700); err != nil {
		return err
	}
	n.config = filepath.Join(nd, "vault.hcl")
	n.logFile = filepath.Join(nd, "vault.log")
	hcl := fmt.Sprintf(`storage "raft" {
  path = %q
  node_id = %q
  performance_multiplier = 1
%s}
listener "tcp" {
  address = "%[4]s:%[5]d"
  cluster_address = "%[4]s:%[6]d"
  tls_disable = true
}
api_addr = "http://%[4]s:%[5]d"
cluster_addr = "https://%[4]s:%[6]d"
disable_mlock = true
ui = false
`, filepath.Join(nd, "data"), n.ID, joins, host, port, port+1)
	return os.WriteFile(n.config, []byte(hcl), 0o600)
}

// boot starts every node and waits until each listens.
func (c *Cluster) boot() error {
	for _, n := range c.Nodes {
		if err := n.start(); err != nil {
			return err
		}
	}
	for _, n := range c.Nodes {
		if err := n.waitListening(30 * time.Second); err != nil {
			return err
		}
	}
	return nil
}

// initialize initializes node1 with one key share, unseals it, waits until
// it is active, then unseals the others: each completes its retry_join.
func (c *Cluster) initialize() error {
	init, err := c.Nodes[0].rawClient().Sys().InitWithContext(context.Background(), &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		return fmt.Errorf("vaulttest: init: %w", err)
	}
	c.RootToken, c.UnsealKey = init.RootToken, init.Keys[0]
	if err := c.Nodes[0].unseal(30 * time.Second); err != nil {
		return err
	}
	if _, err := c.WaitLeader(30 * time.Second); err != nil {
		return err
	}
	// Autopilot promotes a joined node to voter once it has been stable for
	// server_stabilization_time (10 s by default): shorten it for tests.
	if _, err := c.Nodes[0].Client(c.RootToken).Logical().Write("sys/storage/raft/autopilot/configuration", map[string]any{
		"server_stabilization_time": "1s", "cleanup_dead_servers": false,
	}); err != nil {
		return fmt.Errorf("vaulttest: autopilot configuration: %w", err)
	}
	for _, n := range c.Nodes[1:] {
		if err := n.unseal(60 * time.Second); err != nil {
			return err
		}
	}
	return nil
}

// WaitVoters waits until the Raft configuration has want voters, each of
// whose nodes answers as active or standby.
func (c *Cluster) WaitVoters(t testing.TB, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n := c.Leader(); n != nil {
			sec, err := n.Client(c.RootToken).Logical().Read("sys/storage/raft/configuration")
			if err == nil && sec != nil {
				var conf struct {
					Servers []struct {
						NodeID string `json:"node_id"`
						Voter  bool   `json:"voter"`
					} `json:"servers"`
				}
				raw, _ := json.Marshal(sec.Data["config"])
				_ = json.Unmarshal(raw, &conf)
				voters := 0
				for _, s := range conf.Servers {
					if s.Voter {
						voters++
					}
				}
				if voters >= want && len(c.Standbys()) >= want-1 {
					return
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("vaulttest: fewer than %d raft voters after %s: %s", want, timeout, c.RaftPeers(t))
}

func (n *Node) start() error {
	out, err := os.OpenFile(n.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("vaulttest: %w", err)
	}
	defer out.Close()
	argv := []string{n.c.bin, "server", "-config", n.config}
	if w := n.c.opts.Wrap; w != nil {
		argv = w(n.index(), argv)
	}
	n.cmd = exec.Command(argv[0], argv[1:]...)
	n.cmd.Env = cleanEnv()
	n.cmd.Dir = filepath.Dir(n.config)
	n.cmd.Stdout, n.cmd.Stderr = out, out
	n.done = make(chan struct{})
	if err := startLocked(n.cmd, n.done); err != nil {
		return fmt.Errorf("vaulttest: start %s: %w", n.ID, err)
	}
	return nil
}

// Kill sends SIGKILL to the node's process and waits for it to exit.
func (n *Node) Kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
	}
}

// Restart starts a killed node again on its data and unseals it; it then
// rejoins the cluster as a standby.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	n.Kill()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	if err := n.waitListening(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n.unseal(60 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// index is the node's place in the cluster (0 for node1).
func (n *Node) index() int {
	for i, o := range n.c.Nodes {
		if o == n {
			return i
		}
	}
	return -1
}

// rawClient is a client of this node alone, without a token.
func (n *Node) rawClient() *api.Client {
	cfg := api.DefaultConfig()
	if d := n.c.opts.Dial; d != nil {
		cfg.HttpClient.Transport.(*http.Transport).DialContext = d
	}
	cfg.Address = n.Addr
	cfg.MaxRetries = 0
	cfg.Timeout = 5 * time.Second
	c, _ := api.NewClient(cfg)
	c.ClearToken()
	return c
}

// Client returns a client of this node alone with token.
func (n *Node) Client(token string) *api.Client {
	c := n.rawClient()
	c.SetToken(token)
	return c
}

// Health is the node's sys/health answer status: 200 active, 429 standby,
// 503 sealed, 501 not initialized, 0 no answer.
func (n *Node) Health() int {
	resp, err := (&http.Client{Timeout: time.Second, Transport: n.c.health}).Get(n.Addr + "/v1/sys/health")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (n *Node) waitListening(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-n.done:
			return fmt.Errorf("vaulttest: %s exited during start:\n%s", n.ID, tail(n.logFile, 3000))
		default:
		}
		if n.Health() != 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("vaulttest: %s not listening after %s:\n%s", n.ID, timeout, tail(n.logFile, 3000))
}

// unseal submits the unseal key until the node is unsealed (a joining node
// may first need its join to go through) and answers as active or standby.
func (n *Node) unseal(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := n.rawClient()
	for time.Now().Before(deadline) {
		if h := n.Health(); h == 200 || h == 429 {
			return nil
		}
		st, err := c.Sys().SealStatus()
		if err == nil && st.Initialized && st.Sealed {
			_, _ = c.Sys().Unseal(n.c.UnsealKey)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("vaulttest: %s not unsealed after %s:\n%s", n.ID, timeout, tail(n.logFile, 3000))
}

// Leader returns the active node, or nil when none answers as active.
func (c *Cluster) Leader() *Node {
	for _, n := range c.Nodes {
		if n.Health() == 200 {
			return n
		}
	}
	return nil
}

// WaitLeader waits until a node is active and returns it.
func (c *Cluster) WaitLeader(timeout time.Duration) (*Node, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n := c.Leader(); n != nil {
			return n, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("vaulttest: no active node after %s", timeout)
}

// Standbys returns the nodes that answer as unsealed standbys.
func (c *Cluster) Standbys() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Health() == 429 {
			out = append(out, n)
		}
	}
	return out
}

// WaitStandbys waits until want nodes answer as standbys and one as active.
func (c *Cluster) WaitStandbys(t testing.TB, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if len(c.Standbys()) >= want && c.Leader() != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("vaulttest: fewer than %d standbys with a leader after %s", want, timeout)
}

// StepDown asks the active node to step down (`vault operator step-down`)
// and returns it.
func (c *Cluster) StepDown(t testing.TB) *Node {
	t.Helper()
	n, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Client(c.RootToken).Sys().StepDown(); err != nil {
		t.Fatalf("vaulttest: step-down of %s: %v", n.ID, err)
	}
	return n
}

// KillLeader kills the active node with SIGKILL and returns it.
func (c *Cluster) KillLeader(t testing.TB) *Node {
	t.Helper()
	n, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	n.Kill()
	return n
}

// Client returns a client of the active node with token.
func (c *Cluster) Client(t testing.TB, token string) *api.Client {
	t.Helper()
	n, err := c.WaitLeader(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return n.Client(token)
}

// Token creates a token with the given policies (TTL 1h), as Server.Token.
func (c *Cluster) Token(t testing.TB, policies ...string) string {
	t.Helper()
	return createToken(t, c.Client(t, c.RootToken), policies)
}

// RaftPeers lists the node IDs of the Raft configuration with their voter
// and leader flags, as the active node reports them.
func (c *Cluster) RaftPeers(t testing.TB) string {
	t.Helper()
	sec, err := c.Client(t, c.RootToken).Logical().Read("sys/storage/raft/configuration")
	if err != nil || sec == nil {
		t.Fatalf("vaulttest: raft configuration: %v", err)
	}
	raw, _ := json.Marshal(sec.Data["config"])
	return string(raw)
}
