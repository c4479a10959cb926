package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The images run under runc here as CI runs them: unpacked from the
// docker-archive (skopeo to an OCI layout, umoci to a runtime bundle), in
// their own pid, mount, ipc and uts namespaces, sharing the host's network
// so that keyd listens on a free 127.0.0.1 port the test can reach. runc
// needs root; crun does not work here; process.terminal must be false.

// requireRunc returns the images' directory, or skips outside make
// image-test; in CI (CI=1) missing root or tools fail instead.
func requireRunc(t *testing.T) string {
	t.Helper()
	dir := builtDir(t)
	var missing []string
	if os.Getuid() != 0 {
		missing = append(missing, "root (runc runs containers as root here)")
	}
	for _, tool := range []string{"runc", "umoci", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (Debian package "+tool+"; tools/setup-debian installs it)")
		}
	}
	if len(missing) > 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("the image tests need %s", strings.Join(missing, ", "))
		}
		t.Skipf("the image tests need %s", strings.Join(missing, ", "))
	}
	return dir
}

var containerSeq atomic.Int64

// bundle is an image unpacked for runc, with its parsed config.json.
type bundle struct {
	dir    string // the bundle; rootfs/ under it
	state  string // runc --root
	config map[string]any
}

// unpack turns the docker-archive <dir>/<image>-image.tar into a runc bundle
// in a temporary directory removed at cleanup.
func unpack(t *testing.T, dir string, k kind) *bundle {
	t.Helper()
	tmp, err := os.MkdirTemp("", "image-runc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	archive := filepath.Join(dir, k.name+"-image.tar")
	runTool(t, "skopeo", "copy", "--quiet", "docker-archive:"+archive+":"+k.name+":latest", "oci:"+filepath.Join(tmp, "oci")+":"+k.name)
	b := &bundle{dir: filepath.Join(tmp, "bundle"), state: filepath.Join(tmp, "state")}
	runTool(t, "umoci", "unpack", "--image", filepath.Join(tmp, "oci")+":"+k.name, b.dir)
	raw, err := os.ReadFile(filepath.Join(b.dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &b.config); err != nil {
		t.Fatal(err)
	}
	// No terminal (runc run then passes stdio through); the host's network.
	process := b.config["process"].(map[string]any)
	process["terminal"] = false
	linux := b.config["linux"].(map[string]any)
	var ns []any
	for _, n := range linux["namespaces"].([]any) {
		if n.(map[string]any)["type"] != "network" {
			ns = append(ns, n)
		}
	}
	linux["namespaces"] = ns
	// umoci makes the image's volume a tmpfs; like a fresh Docker volume,
	// keyd gets the image's own /data (65532, 0700) unless a test mounts one.
	b.mountData(nil)
	return b
}

// mountData replaces what is mounted at /data: nothing (the image's
// directory) or m.
func (b *bundle) mountData(m map[string]any) {
	var mounts []any
	for _, x := range b.config["mounts"].([]any) {
		if x.(map[string]any)["destination"] != "/data" {
			mounts = append(mounts, x)
		}
	}
	if m != nil {
		mounts = append(mounts, m)
	}
	b.config["mounts"] = mounts
}

func (b *bundle) annotation(key string) string {
	a, _ := b.config["annotations"].(map[string]any)
	s, _ := a[key].(string)
	return s
}

// container is one `runc run` in the foreground.
type container struct {
	id             string
	b              *bundle
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	started        time.Time
	done           chan struct{}
	waitErr        error
}

// start runs the bundle's image with args (and env added) as container
// process. At cleanup, a container still running is killed and deleted.
func (b *bundle) start(t *testing.T, args []string, env ...string) *container {
	t.Helper()
	process := b.config["process"].(map[string]any)
	process["args"] = args
	process["env"] = append(process["env"].([]any), toAny(env)...)
	raw, err := json.MarshalIndent(b.config, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "config.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &container{
		id: fmt.Sprintf("image-test-%d-%d", os.Getpid(), containerSeq.Add(1)),
		b:  b, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{}),
	}
	c.cmd = exec.Command("runc", "--root", b.state, "run", "--bundle", b.dir, c.id)
	c.cmd.Stdout, c.cmd.Stderr = c.stdout, c.stderr
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("runc run: %v", err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			exec.Command("runc", "--root", b.state, "kill", c.id, "KILL").Run()
			select {
			case <-c.done:
			case <-time.After(10 * time.Second):
				c.cmd.Process.Kill()
				<-c.done
			}
		}
		exec.Command("runc", "--root", b.state, "delete", "--force", c.id).Run()
		if t.Failed() {
			t.Logf("container %s stdout:\n%s\nstderr:\n%s", c.id, c.stdout, c.stderr)
		}
	})
	return c
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// wait waits up to d for the container to end and returns its exit code.
func (c *container) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		t.Fatalf("container %s still runs after %v:\nstdout:\n%s\nstderr:\n%s", c.id, d, c.stdout, c.stderr)
	}
	var exit *exec.ExitError
	switch {
	case c.waitErr == nil:
		return 0
	case errors.As(c.waitErr, &exit):
		return exit.ExitCode()
	}
	t.Fatalf("runc run: %v", c.waitErr)
	return -1
}

// exec runs args in the running container (runc exec) with stdin and
// returns its output and exit code.
func (c *container) exec(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runc", append([]string{"--root", c.b.state, "exec", c.id}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("runc exec %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// pid is the container process's pid on the host.
func (c *container) pid(t *testing.T) int {
	t.Helper()
	out := runTool(t, "runc", "--root", c.b.state, "state", c.id)
	var st struct{ Pid int }
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("runc state: %v\n%s", err, out)
	}
	return st.Pid
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			stderr = exit.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// hostKeyd is the host's bin/keyd (make image-test builds it).
func hostKeyd(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("KEYD_HOST_BIN")
	if bin == "" {
		bin = "../../bin/keyd"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the host's keyd: %v (make build)", err)
	}
	return bin
}

// TestKeydImageUnderRunc: keyd's image runs as uid 65532, answers /readyz
// within 1 s of the container's start, signs a token the host's keyd verify
// accepts, passes its own healthcheck, has no shell, and stops cleanly
// within 5 s of SIGTERM.
func TestKeydImageUnderRunc(t *testing.T) {
	dir := requireRunc(t)
	host := hostKeyd(t)
	b := unpack(t, dir, keydImage)
	addr := freeAddr(t)
	const signerToken = "image-test-signer-token"
	c := b.start(t, []string{"/usr/local/bin/keyd", "serve", "--listen", addr}, "KEYD_SIGNER_TOKEN="+signerToken)
	url := "http://" + addr

	// Ready within 1 s of start (polled every 5 ms; up to 10 s to say how long).
	var ready time.Duration
	for {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ready = time.Since(c.started)
				break
			}
		}
		select {
		case <-c.done:
			t.Fatalf("keyd's container exited before /readyz answered 200 (%v):\n%s", c.waitErr, c.stderr)
		default:
		}
		if time.Since(c.started) > 10*time.Second {
			t.Fatalf("/readyz did not answer 200 within 10 s of the container's start:\n%s", c.stderr)
		}
		time.Sleep(5 * time.Millisecond) // polling a process for readiness
	}
	t.Logf("/readyz 200 after %v from runc run", ready.Round(time.Millisecond))
	if ready > time.Second {
		t.Errorf("/readyz answered 200 %v after the container's start, want within 1 s", ready)
	}

	// uid and gid 65532 (real, effective, saved, filesystem).
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.pid(t)))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "Uid:") || strings.HasPrefix(line, "Gid:") {
			if f := strings.Fields(line); len(f) != 5 || f[1] != "65532" || f[2] != "65532" || f[3] != "65532" || f[4] != "65532" {
				t.Errorf("keyd runs with %q, want 65532 throughout", line)
			}
		}
	}

	// A token signed in the container verifies with the host's keyd.
	claims := `{"iss":"http://localhost:18000/oauth2","aud":"image-test","sub":"alice","grant_type":"password"}`
	token, stderr, code := c.exec(t, claims, "/usr/local/bin/keyd", "sign", "--server", url, "--token", signerToken)
	if code != 0 {
		t.Fatalf("keyd sign in the container: exit %d\n%s", code, stderr)
	}
	out, err := exec.Command(host, "verify", "--jwks", url+"/.well-known/jwks.json",
		"--issuer", "http://localhost:18000/oauth2", "--audience", "image-test", strings.TrimSpace(token)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"sub"`) {
		t.Errorf("the host's keyd verify of the container's token: %v\n%s", err, out)
	}

	// keyd healthcheck in the container.
	if _, stderr, code := c.exec(t, "", "/usr/local/bin/keyd", "healthcheck", "--url", url+"/readyz"); code != 0 {
		t.Errorf("keyd healthcheck in the container: exit %d\n%s", code, stderr)
	}

	// No shell: neither in the filesystem nor runnable.
	for _, p := range []string{"bin/sh", "usr/bin/sh", "bin/bash", "bin/busybox"} {
		if _, err := os.Lstat(filepath.Join(b.dir, "rootfs", p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("/%s in keyd's image: %v, want none", p, err)
		}
	}
	if _, _, code := c.exec(t, "", "/bin/sh", "-c", "true"); code == 0 {
		t.Error("runc exec /bin/sh -c true succeeded in keyd's image, want no shell")
	}

	// SIGTERM (what docker stop and Kubernetes send): a clean exit within 5 s.
	stopAt := time.Now()
	runTool(t, "runc", "--root", b.state, "kill", c.id, "TERM")
	code = c.wait(t, 5*time.Second)
	t.Logf("stopped %v after SIGTERM, exit %d", time.Since(stopAt).Round(time.Millisecond), code)
	logs := c.stderr.String()
	if code != 0 || !strings.Contains(logs, `"msg":"keyd stopped"`) || strings.Contains(logs, "goroutine ") || strings.Contains(logs, "panic") {
		t.Errorf("keyd's container after SIGTERM: exit %d, want 0 and \"keyd stopped\":\n%s", code, logs)
	}
}

// TestUnwritableVolumeUnderRunc: a /data volume keyd (uid 65532) cannot
// write, root-owned or mounted read-only, is one line on stderr naming the
// path, the uid and the fix, and a non-zero exit, never a stack trace.
func TestUnwritableVolumeUnderRunc(t *testing.T) {
	dir := requireRunc(t)
	for _, tc := range []struct {
		name    string
		owner   int
		options []string
		want    []string
	}{
		{"root-owned", 0, []string{"rbind", "rw"}, []string{"/data", "uid 65532", "chown -R 65532 /data"}},
		{"read-only", nonroot, []string{"rbind", "ro"}, []string{"/data", "read-only file system", "uid 65532", "owned by uid 65532"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol := filepath.Join(t.TempDir(), "vol")
			if err := os.Mkdir(vol, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(vol, tc.owner, tc.owner); err != nil {
				t.Fatal(err)
			}
			b := unpack(t, dir, keydImage)
			b.mountData(map[string]any{"destination": "/data", "type": "bind", "source": vol, "options": toAny(tc.options)})
			c := b.start(t, []string{"/usr/local/bin/keyd", "serve", "--listen", freeAddr(t)})
			code := c.wait(t, 10*time.Second)
			msg := strings.TrimSpace(c.stderr.String())
			t.Logf("exit %d: %s", code, msg)
			if code == 0 || msg == "" || strings.Contains(msg, "\n") || strings.Contains(msg, "goroutine ") {
				t.Fatalf("keyd on a %s volume: exit %d, stderr:\n%s\nwant a non-zero exit and one line", tc.name, code, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("the line does not say %q", w)
				}
			}
			if entries, _ := os.ReadDir(vol); len(entries) != 0 {
				t.Errorf("keyd left %d entries in the volume it cannot write", len(entries))
			}
		})
	}
}

// TestToolsImageUnderRunc: the tools image's shell runs keyd (as uid 65532),
// the way Tutor and Kubernetes jobs do (sh -e -c).
func TestToolsImageUnderRunc(t *testing.T) {
	dir := requireRunc(t)
	b := unpack(t, dir, toolsImage)
	version := b.annotation("org.opencontainers.image.version")
	c := b.start(t, []string{"sh", "-e", "-c", "keyd --version; id -u"})
	code := c.wait(t, 10*time.Second)
	want := "keyd " + version + "\n65532\n"
	if code != 0 || c.stdout.String() != want {
		t.Errorf("sh -e -c 'keyd --version; id -u' in the tools image: exit %d, stdout %q, want 0 and %q\n%s", code, c.stdout, want, c.stderr)
	}
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
