package vaulttest

import (
	"testing"
	"time"
)

// The cluster helpers: a leader and two standbys; a step-down moves the
// leadership; a killed leader is replaced and, restarted, rejoins.
func TestCluster(t *testing.T) {
	c := StartCluster(t)
	c.WaitStandbys(t, 2, 30*time.Second)
	if _, err := c.Client(t, c.RootToken).Logical().Write("sys/mounts/kv", map[string]any{"type": "kv-v2"}); err != nil {
		t.Fatal(err)
	}
	old := c.StepDown(t)
	n, err := c.WaitLeader(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("step-down: %s -> %s", old.ID, n.ID)
	if n == old {
		t.Error("the node that stepped down is active again")
	}
	killed := c.KillLeader(t)
	began := time.Now()
	n, err = c.WaitLeader(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -9 %s: %s active after %v", killed.ID, n.ID, time.Since(began).Round(10*time.Millisecond))
	if n == killed {
		t.Fatal("the killed node is still active")
	}
	killed.Restart(t)
	c.WaitVoters(t, 3, 60*time.Second)
	// The data survived: the mount is still there.
	if _, err := c.Client(t, c.RootToken).Logical().Write("kv/data/x", map[string]any{"data": map[string]any{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
}
