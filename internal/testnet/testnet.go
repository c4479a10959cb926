//go:build linux

// Package testnet gives tests hosts of their own on a private network:
// each host is a Linux network namespace with one veth on a bridge (in a
// hub namespace of its own), and Cut drops the packets between two hosts
// on the bridge, so that connects hang and answers vanish as in a real
// network partition, instead of being refused. Nothing touches the
// machine's own network namespace: the test process reaches the hosts from
// a host of its own (Dial, Client).
//
// It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` (iproute2) and
// `nft` (nftables). New fails the test when they are missing under CI=1
// and skips it otherwise.
package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace this package creates.
const Prefix = "kdpart"

// subnet is the private /24 of every Net: each Net has its own bridge in
// its own namespaces, so two Nets never meet.
const subnet = "10.213.7."

// Net is one private network: a hub namespace with a bridge, and hosts.
type Net struct {
	t     testing.TB
	name  string // Prefix-<pid>
	hub   string // namespace of the bridge
	ctl   *Host  // the test process's own host
	mu    sync.Mutex
	hosts []*Host
	cuts  [][2]*Host
}

// Host is a network namespace with one address on the Net.
type Host struct {
	Name string // short name, e.g. "vault1"
	NS   string // namespace name
	IP   string
	n    *Net
}

// New creates a Net (its hub and the test process's own host) that is
// removed when the test ends, failed or not. Without root or the tools it
// fails the test under CI=1 and skips it otherwise, saying why.
func New(t testing.TB) *Net {
	t.Helper()
	if err := usable(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("testnet: %v (CI=1: network-partition tests must run)", err)
		}
		t.Skipf("testnet: %v; run as root with iproute2 and nftables to test network partitions", err)
	}
	removeOrphans(t)
	n := &Net{t: t, name: Prefix + "-" + strconv.Itoa(os.Getpid())}
	n.hub = n.name + "-hub"
	t.Cleanup(n.remove)
	n.must("ip", "netns", "add", n.hub)
	n.must("ip", "-n", n.hub, "link", "add", "name", "br0", "type", "bridge")
	n.must("ip", "-n", n.hub, "link", "set", "br0", "up")
	// The cuts: a bridge-family filter in the hub drops IP packets
	// between two hosts in the middle of the network (ARP still works, so
	// a connect hangs rather than failing with "no route to host").
	n.nft("add table bridge kdpart")
	n.nft("add chain bridge kdpart cut { type filter hook forward priority 0 ; policy accept ; }")
	n.ctl = n.AddHost("ctl")
	return n
}

// usable says why this process cannot build a Net, or nil.
func usable() error {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install iproute2 nftables)", tool)
		}
	}
	return nil
}

// removeOrphans removes the namespaces of earlier runs whose process is
// gone (a test binary killed before its cleanup).
func removeOrphans(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], Prefix+"-") {
			continue
		}
		parts := strings.SplitN(f[0], "-", 3)
		if len(parts) < 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue // not ours, or its run is alive
		}
		if out, err := exec.Command("ip", "netns", "del", f[0]).CombinedOutput(); err != nil {
			t.Logf("testnet: remove orphan namespace %s: %v %s", f[0], err, out)
		}
	}
}

func (n *Net) must(argv ...string) {
	n.t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		n.t.Fatalf("testnet: %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

func (n *Net) nft(rule string) {
	n.t.Helper()
	n.must(append([]string{"ip", "netns", "exec", n.hub, "nft"}, strings.Fields(rule)...)...)
}

// AddHost adds a host: a namespace Prefix-<pid>-<name> whose eth0 has the
// next free address of the subnet (.2 up).
func (n *Net) AddHost(name string) *Host {
	n.t.Helper()
	n.mu.Lock()
	i := len(n.hosts)
	h := &Host{Name: name, NS: n.name + "-" + name, IP: subnet + strconv.Itoa(2+i), n: n}
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	port := "p" + strconv.Itoa(i)
	n.must("ip", "netns", "add", h.NS)
	n.must("ip", "-n", n.hub, "link", "add", "name", port, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	n.must("ip", "-n", n.hub, "link", "set", port, "master", "br0", "up")
	n.must("ip", "-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
	n.must("ip", "-n", h.NS, "link", "set", "eth0", "up")
	n.must("ip", "-n", h.NS, "link", "set", "lo", "up")
	return h
}

// Cut drops every IP packet between a and b, both ways, from now on.
func (n *Net) Cut(a, b *Host) {
	n.t.Helper()
	n.nft(fmt.Sprintf("add rule bridge kdpart cut ip saddr %s ip daddr %s drop", a.IP, b.IP))
	n.nft(fmt.Sprintf("add rule bridge kdpart cut ip saddr %s ip daddr %s drop", b.IP, a.IP))
	n.mu.Lock()
	n.cuts = append(n.cuts, [2]*Host{a, b})
	n.mu.Unlock()
}

// Heal removes every cut.
func (n *Net) Heal() {
	n.t.Helper()
	n.nft("flush chain bridge kdpart cut")
	n.mu.Lock()
	n.cuts = nil
	n.mu.Unlock()
}

// remove deletes every namespace of the Net. A process still running in
// one keeps its network until it exits; the name is gone at once.
func (n *Net) remove() {
	n.mu.Lock()
	hosts := n.hosts
	n.mu.Unlock()
	for _, ns := range append([]string{n.hub}, nsNames(hosts)...) {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			n.t.Logf("testnet: remove namespace %s: %v %s", ns, err, out)
		}
	}
}

func nsNames(hosts []*Host) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h.NS
	}
	return out
}

// Self is the test process's own host: Dial and Client connect from it.
func (n *Net) Self() *Host { return n.ctl }

// Command returns a command that runs argv in h's namespace (`ip netns
// exec`, which then execs argv: the process is argv's own).
func (h *Host) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS}, argv...)...)
}

// Wrap is Command's argument list: the argv that runs argv in h's namespace.
func (h *Host) Wrap(argv []string) []string {
	return append([]string{"ip", "netns", "exec", h.NS}, argv...)
}

// Dial makes a connection from the test process's own host: the socket is
// created in that namespace (on a thread of its own) and then used as any
// other.
func (n *Net) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.ctl.in(func() (err error) {
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen listens on addr in h's namespace, from the test process.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := h.in(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// in runs f on a thread of its own that is in h's namespace meanwhile. The
// sockets f creates stay in that namespace.
func (h *Host) in(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := inLocked(h.NS, f)
		if !errors.Is(err, errThreadTainted) {
			runtime.UnlockOSThread() // else the thread ends with this goroutine
		}
		ch <- err
	}()
	return <-ch
}

var errThreadTainted = errors.New("testnet: could not return the thread to its namespace")

// inLocked runs f in namespace ns on the current (locked) thread, and
// returns the thread to its own namespace.
func inLocked(ns string, f func() error) error {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := setns(target); err != nil {
		return fmt.Errorf("testnet: enter %s: %w", ns, err)
	}
	err = f()
	if serr := setns(self); serr != nil {
		return fmt.Errorf("%w: %v", errThreadTainted, serr)
	}
	return err
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// Transport is an HTTP transport whose connections come from Dial.
func (n *Net) Transport() *http.Transport {
	return &http.Transport{DialContext: n.Dial, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
}

// Client is an HTTP client of the test process's own host.
func (n *Net) Client() *http.Client { return &http.Client{Transport: n.Transport()} }
