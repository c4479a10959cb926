package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/fsutil"
	"github.com/openedx-keyd/keyd/internal/report"
	"github.com/openedx-keyd/keyd/internal/server"
)

// defaultLateAfter is how long after its due time a scheduled rotation may
// be done before the report calls it late.
const defaultLateAfter = server.DefaultLateAfter

// policyFlags are the lifecycle settings an offline report judges the chain
// against (the server's own are used online).
var policyFlags = []string{"rotation-schedule", "propagation-delay", "max-token-lifetime", "clock-skew", "activation-max-wait", "jwks-max-age"}

// cmdAuditReport is `keyd audit report`: online (GET /v1/audit/report with
// --server and an auditor or admin --token) or offline (--file or --vault,
// read and verified exactly as `keyd audit verify` does).
func cmdAuditReport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit report", flag.ContinueOnError)
	c := clientFlags(fs)
	file := fs.String("file", "", "offline: the local audit log (<data-dir>/audit.log), checked as keyd audit verify --file does")
	dataDir := fs.String("data-dir", "", "with --file: data dir whose keys the chain must account for (default: the log's directory)")
	vaultMode := fs.Bool("vault", false, "offline: the chain in Vault KV, read with the auditor's own token (VAULT_ADDR; --token, KEYD_TOKEN or VAULT_TOKEN)")
	since := fs.String("since", "", "start of the period, RFC 3339 (default: the first event)")
	until := fs.String("until", "", "end of the period, RFC 3339 (default: now)")
	out := fs.String("out", "", "write the report to FILE (default: standard output)")
	format := fs.String("format", report.FormatHTML, "html (one self-contained page) or json (the same facts, for a SIEM)")
	lateAfter := fs.Duration("late-after", defaultLateAfter, "a scheduled rotation done later than this after it was due is late")
	raw := config.Flags(fs, policyFlags...)
	vf := &vaultFlagSet{raw: config.Flags(fs, "vault-mount", "vault-key", "vault-kv-mount"), tok: &c.token, envs: []string{"KEYD_TOKEN", "VAULT_TOKEN"}}
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	usage := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "keyd audit report: "+format+"\n", args...)
		return 2
	}
	if *file != "" && *vaultMode {
		return usage("give at most one of --file PATH or --vault (neither: ask the server at --server)")
	}
	f, err := report.ParseFormat(*format)
	if err != nil {
		return usage("--format: %v", err)
	}
	period, err := parsePeriod(*since, *until)
	if err != nil {
		return usage("%v", err)
	}
	if *lateAfter < 0 {
		return usage("--late-after %s is negative", *lateAfter)
	}
	var doc []byte
	if *file == "" && !*vaultMode {
		doc, err = c.report(ctx, *since, *until, f, *lateAfter)
	} else {
		var pol audit.Policy
		if pol, err = flagPolicy(fs, raw, *lateAfter); err != nil {
			return usage("%v", err)
		}
		doc, err = offlineReport(ctx, offlineSource{file: *file, dataDir: *dataDir, vault: *vaultMode, vf: vf}, pol, period, f)
	}
	if err != nil {
		return fail(stderr, err)
	}
	if *out == "" {
		_, err = stdout.Write(doc)
	} else {
		err = fsutil.WriteFileAtomic(*out, doc, 0o600)
	}
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

// parsePeriod reads --since and --until (RFC 3339; empty: open).
func parsePeriod(since, until string) (audit.Period, error) {
	var p audit.Period
	for _, v := range []struct {
		name, s string
		to      *time.Time
	}{{"since", since, &p.Since}, {"until", until, &p.Until}} {
		if v.s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v.s)
		if err != nil {
			return p, fmt.Errorf("--%s %q is not an RFC 3339 time (for example 2026-01-01T00:00:00Z)", v.name, v.s)
		}
		*v.to = t
	}
	if !p.Since.IsZero() && !p.Until.IsZero() && p.Since.After(p.Until) {
		return p, fmt.Errorf("--since %s is after --until %s", since, until)
	}
	return p, nil
}

// report fetches the report the server builds.
func (c *client) report(ctx context.Context, since, until, format string, lateAfter time.Duration) ([]byte, error) {
	q := url.Values{"format": {format}}
	if since != "" {
		q.Set("since", since)
	}
	if until != "" {
		q.Set("until", until)
	}
	if lateAfter != defaultLateAfter {
		q.Set("late_after", lateAfter.String())
	}
	var raw []byte
	err := c.do(ctx, http.MethodGet, "/v1/audit/report?"+q.Encode(), nil, &raw)
	return raw, err
}

// flagPolicy is the offline report's lifecycle settings: the flags (or
// their KEYD_* variables), the defaults for the others, each named.
func flagPolicy(fs *flag.FlagSet, raw map[string]*string, lateAfter time.Duration) (audit.Policy, error) {
	cfg, err := config.Parse(raw)
	if err != nil {
		return audit.Policy{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var defaulted, fromEnv []string
	for _, name := range policyFlags[:len(policyFlags)-1] { // jwks-max-age only validates
		env := "KEYD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		_, inEnv := os.LookupEnv(env)
		switch {
		case set[name]:
		case inEnv:
			fromEnv = append(fromEnv, env)
		default:
			defaulted = append(defaulted, name)
		}
	}
	pol := server.Policy(cfg, lateAfter)
	pol.Source = "the flags of keyd audit report"
	if len(fromEnv) > 0 {
		pol.Source += " and the environment (" + strings.Join(fromEnv, ", ") + ")"
	}
	pol.Source += ", not read from a server"
	pol.Defaulted = defaulted
	return pol, nil
}

// offlineSource is where an offline report reads the chain.
type offlineSource struct {
	file, dataDir string
	vault         bool
	vf            *vaultFlagSet
}

// offlineReport verifies the chain as `keyd audit verify` does and builds
// the report from that verification.
func offlineReport(ctx context.Context, src offlineSource, pol audit.Policy, period audit.Period, format string) ([]byte, error) {
	var v audit.Verification
	var source string
	if src.vault {
		var err error
		if v, err = inspectVaultChain(ctx, src.vf); err != nil {
			return nil, err
		}
		source = "Vault KV mount " + src.vf.get("vault-kv-mount") + " at " + os.Getenv("VAULT_ADDR") + ", read with the auditor's token"
	} else {
		fc, err := inspectFileChain(ctx, src.file, src.dataDir, false)
		if err != nil {
			return nil, err
		}
		v, source = fc.Verification, "file "+src.file
		for _, n := range fc.notes {
			v.NotChecked = append(v.NotChecked, "key store note: "+n)
		}
	}
	period.Now = clock.Real{}.Now()
	r, err := audit.BuildReport(v, pol, period, source)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := report.Write(&buf, r, format); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
