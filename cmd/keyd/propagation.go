package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/openedx-keyd/keyd/internal/api"
)

// cmdPropagation is `keyd propagation` (show) and `keyd propagation confirm`.
func cmdPropagation(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "confirm" {
		return cmdPropagationConfirm(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("propagation", flag.ContinueOnError)
	c := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	return showPropagation(ctx, c, http.MethodGet, "/v1/propagation", nil, *asJSON, stdout, stderr)
}

func cmdPropagationConfirm(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("propagation confirm", flag.ContinueOnError)
	c := clientFlags(fs)
	client := fs.String("client", "", "the expected client that holds the key (required)")
	version := fs.Int("version", 0, "the key version it holds (required)")
	asJSON := fs.Bool("json", false, "print the raw JSON answer")
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	if strings.TrimSpace(*client) == "" || *version <= 0 {
		fmt.Fprintln(stderr, "keyd propagation confirm: --client and --version are required")
		return 2
	}
	body := map[string]any{"client": *client, "version": *version}
	return showPropagation(ctx, c, http.MethodPost, "/v1/propagation/confirm", body, *asJSON, stdout, stderr)
}

func showPropagation(ctx context.Context, c *client, method, path string, body any, asJSON bool, stdout, stderr io.Writer) int {
	if asJSON {
		var raw []byte
		if err := c.do(ctx, method, path, body, &raw); err != nil {
			return fail(stderr, err)
		}
		stdout.Write(append(raw, '\n'))
		return 0
	}
	var p api.PropagationInfo
	if err := c.do(ctx, method, path, body, &p); err != nil {
		return fail(stderr, err)
	}
	printPropagation(stdout, p)
	return 0
}

// printPropagation prints the pending key, then one row per instance of
// each expected client (a client without instances gets one row).
func printPropagation(w io.Writer, p api.PropagationInfo) {
	switch pk := p.Pending; {
	case pk == nil:
		fmt.Fprintln(w, "no pending key")
	default:
		state := "waiting"
		if pk.Confirmed {
			state = "confirmed"
		}
		if !pk.Gated {
			state += " (not gated: activates at activates_at)"
		}
		t := newTable(w, "PENDING", "KID", "ACTIVATES", "DEADLINE", "CLIENTS")
		t.row(pk.Version, pk.KID, pk.ActivatesAt, deref(pk.Deadline), state)
		t.flush()
	}
	fmt.Fprintln(w)
	t := newTable(w, "CLIENT", "CONFIRMED", "BY", "LIVE", "INSTANCE", "LAST FETCH", "MAX VERSION")
	for _, cl := range p.Clients {
		live := fmt.Sprintf("%d of %d", cl.Holding, cl.Live)
		if len(cl.Instances) == 0 {
			t.row(cl.Client, cl.Confirmed, deref(cl.ConfirmedBy), live, "-", "-", "-")
		}
		for _, in := range cl.Instances {
			t.row(cl.Client, cl.Confirmed, deref(cl.ConfirmedBy), live, in.Instance, in.LastFetch, in.MaxVersion)
		}
	}
	t.flush()
}

// waitingLine says what a pending key waits for, as `keyd keys` prints it:
// "version 5 waiting for ecommerce: 2 of 3 instances; notes: 0 of 0 instances".
func waitingLine(version int, waits []api.WaitInfo) string {
	if len(waits) == 0 {
		return ""
	}
	parts := make([]string, len(waits))
	for i, w := range waits {
		parts[i] = fmt.Sprintf("%s: %d of %d instances", w.Client, w.Holding, w.Live)
	}
	return fmt.Sprintf("version %d waiting for %s", version, strings.Join(parts, "; "))
}
