package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/signer/vault"
)

// client is what every client subcommand shares: --server and --token.
type client struct {
	server string
	token  string
	http   *http.Client
}

func clientFlags(fs *flag.FlagSet) *client {
	c := &client{http: &http.Client{Timeout: 30 * time.Second}}
	def := cmp.Or(os.Getenv("KEYD_SERVER"), "http://127.0.0.1:8080")
	fs.StringVar(&c.server, "server", def, "keyd URL (env KEYD_SERVER)")
	fs.StringVar(&c.token, "token", os.Getenv("KEYD_TOKEN"), "bearer token (env KEYD_TOKEN)")
	return c
}

// do sends a request and decodes a JSON answer into out; an error response
// becomes an error carrying keyd's message.
func (c *client) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	base, err := serverURL(c.server)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return fmt.Errorf("bad --server: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach keyd: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Message string }
		if json.Unmarshal(raw, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s (%d %s)", e.Message, resp.StatusCode, e.Error)
		}
		return fmt.Errorf("keyd answered %s", resp.Status)
	}
	if b, ok := out.(*[]byte); ok {
		*b = raw
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("keyd answered something that is not JSON: %w", err)
	}
	return nil
}

// serverURL checks --server: an http or https URL with a host (a bare
// host:port is refused, so a token is never sent where it was not meant to
// go), returned without a trailing slash.
func serverURL(server string) (string, error) {
	s := strings.TrimRight(strings.TrimSpace(server), "/")
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		hostPort := s
		if i := strings.Index(s, "//"); i >= 0 {
			hostPort = s[i+2:]
		}
		return "", fmt.Errorf("--server %q is not an http:// or https:// URL (for example http://%s)", server, hostPort)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("--server %q must not have a query or fragment", server)
	}
	return s, nil
}

// fail prints err as one line (a Vault API error included) and returns 1.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "keyd:", vault.Explain(err))
	return 1
}

// parseFlags parses args; it returns false (after printing) on a usage error
// or after printing the help (which run turns into exit 0). A usage error is
// one line with a --help hint: the full flag list is what --help is for.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) bool {
	fs.SetOutput(io.Discard) // the flag package's own error and usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(fs)
		return false
	case err != nil:
		fmt.Fprintf(stderr, "keyd %s: %v (\"keyd %s --help\" lists the flags)\n", fs.Name(), err, fs.Name())
		return false
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "keyd %s: unexpected argument %q (\"keyd %s --help\" shows the usage)\n", fs.Name(), fs.Arg(0), fs.Name())
		return false
	}
	return true
}

// printUsage prints a command's synopsis and its flags on fs's output.
func printUsage(fs *flag.FlagSet) {
	if s, ok := synopses[fs.Name()]; ok {
		fmt.Fprint(fs.Output(), s, "\nflags:\n")
	} else {
		fmt.Fprintf(fs.Output(), "usage: keyd %s [flags]\n\nflags:\n", fs.Name())
	}
	fs.PrintDefaults()
}

func cmdSign(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	c := clientFlags(fs)
	ttl := fs.String("ttl", "", "token lifetime, e.g. 15m (default: the server's max-token-lifetime)")
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	raw, err := io.ReadAll(io.LimitReader(stdin, 64<<10+1))
	if err != nil {
		return fail(stderr, fmt.Errorf("read claims from stdin: %w", err))
	}
	var claims json.RawMessage
	if err := json.Unmarshal(raw, &claims); err != nil || !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		return fail(stderr, errors.New("stdin must hold the claims as one JSON object"))
	}
	body := map[string]any{"claims": claims}
	if *ttl != "" {
		body["ttl"] = *ttl
	}
	var out api.SignResponse
	if err := c.do(ctx, http.MethodPost, "/v1/sign", body, &out); err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout, out.Token)
	return 0
}

func cmdKeys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	c := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	var raw []byte
	if err := c.do(ctx, http.MethodGet, "/v1/keys", nil, &raw); err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		stdout.Write(append(raw, '\n'))
		return 0
	}
	var out api.KeyList
	if err := json.Unmarshal(raw, &out); err != nil {
		return fail(stderr, err)
	}
	printKeys(stdout, out.Keys)
	printWaiting(stdout, out.Keys)
	return 0
}

// printKeys prints key entries as the table of `keyd keys`.
func printKeys(w io.Writer, keys []api.Key) {
	t := newTable(w, "VERSION", "STATE", "ALG", "KID", "CREATED", "ACTIVATES", "RETIRES")
	for _, k := range keys {
		t.row(k.Version, k.State, k.Alg, k.KID, orDash(k.CreatedAt), orDash(k.ActivatesAt), deref(k.RetiresAt))
	}
	t.flush()
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

// orDash is s, or "-" for a member the answer lacks.
func orDash(s string) string { return cmp.Or(s, "-") }

func cmdRotate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rotate", flag.ContinueOnError)
	c := clientFlags(fs)
	emergency := fs.Bool("emergency", false, "activate the new key at once and destroy every older key")
	reason := fs.String("reason", "", "why (required with --emergency)")
	adopt := fs.Bool("adopt-settings", false, "create the key under this replica's settings although they differ from the newest key's")
	asJSON := fs.Bool("json", false, "print the raw JSON answer of POST /v1/rotate")
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	if *emergency && strings.TrimSpace(*reason) == "" {
		fmt.Fprintln(stderr, "keyd rotate: --emergency needs --reason")
		return 2
	}
	// The keys before and after: a normal rotation while a key is pending
	// answers with that key, and only the comparison tells that nothing was
	// created. Reading the keys is best effort (the answer is what counts).
	var before api.KeyList
	beforeErr := c.do(ctx, http.MethodGet, "/v1/keys", nil, &before)
	var raw []byte
	if err := c.do(ctx, http.MethodPost, "/v1/rotate", map[string]any{"emergency": *emergency, "reason": *reason, "adopt_settings": *adopt}, &raw); err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		stdout.Write(append(raw, '\n'))
		return 0
	}
	var got api.Key
	if err := json.Unmarshal(raw, &got); err != nil {
		return fail(stderr, fmt.Errorf("keyd answered something that is not JSON: %w", err))
	}
	row := &got
	var after api.KeyList
	if err := c.do(ctx, http.MethodGet, "/v1/keys", nil, &after); err == nil && after.Find(got.Version) != nil {
		row = after.Find(got.Version)
	}
	if old := before.Find(got.Version); beforeErr == nil && old != nil && !*emergency {
		fmt.Fprintf(stdout, "a key is already pending: nothing created (version %d activates at %s)\n", old.Version, orDash(row.ActivatesAt))
	}
	printKeys(stdout, []api.Key{*row})
	return 0
}

func cmdHealthcheck(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "URL that must answer 200")
	pid := fs.Int("pid", 0, "also require the answer to come from the keyd of this process ID (the pid member of /readyz)")
	wait := fs.Duration("wait", 0, "keep trying this long (e.g. 60s) until ready; with --pid, stop at once when that process has exited")
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	if *wait <= 0 {
		if err := checkReady(ctx, *url, *pid, 5*time.Second); err != nil {
			return fail(stderr, err)
		}
		return 0
	}
	deadline := time.Now().Add(*wait)
	for {
		if *pid > 0 && processGone(*pid) {
			return fail(stderr, fmt.Errorf("the keyd of pid %d exited before it was ready; its log says why", *pid))
		}
		err := checkReady(ctx, *url, *pid, min(2*time.Second, time.Until(deadline)+time.Millisecond))
		if err == nil {
			return 0
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fail(stderr, fmt.Errorf("not ready after %s: %w", *wait, err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkReady asks url once: nil when it answers 200 and, with pid, the
// answer's pid member is pid (it is this keyd, not another server holding
// the port).
func checkReady(ctx context.Context, url string, pid int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	if pid <= 0 {
		return nil
	}
	var body api.Readiness
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	if body.PID != pid {
		who := "a server that is not keyd, or an older keyd"
		if body.PID != 0 {
			who = fmt.Sprintf("another keyd (pid %d)", body.PID)
		}
		return fmt.Errorf("%s is answered by %s, not by keyd pid %d: stop it or give this keyd another --listen", url, who, pid)
	}
	return nil
}

// printWaiting prints the waiting line of each pending key.
func printWaiting(w io.Writer, keys []api.Key) {
	for _, k := range keys {
		if line := waitingLine(k.Version, k.WaitingFor); line != "" {
			fmt.Fprintln(w, cell(line))
		}
	}
}
