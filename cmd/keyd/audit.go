package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/server"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// cmdAudit is `keyd audit` (list) and `keyd audit verify`.
func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "verify" {
		return cmdAuditVerify(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "report" {
		return cmdAuditReport(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	c := clientFlags(fs)
	since := fs.Int64("since", 0, "list events after this seq")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	var raw []byte
	if err := c.do(ctx, http.MethodGet, "/v1/audit?since="+url.QueryEscape(strconv.FormatInt(*since, 10)), nil, &raw); err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		stdout.Write(append(raw, '\n'))
		return 0
	}
	var out api.AuditPage
	if err := json.Unmarshal(raw, &out); err != nil {
		return fail(stderr, err)
	}
	t := newTable(stdout, "SEQ", "TIME", "TYPE", "VERSION", "KID", "ACTOR", "REASON")
	for _, e := range out.Events {
		t.row(e.Seq, e.Time, e.Type, e.Version, e.KID, e.Actor, e.Reason)
	}
	t.flush()
	if !out.ChainValid {
		fmt.Fprintln(stderr, "keyd audit: the chain does NOT verify; run keyd audit verify for the first bad record")
		return 1
	}
	fmt.Fprintln(stdout, "chain valid")
	return 0
}

func cmdAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	file := fs.String("file", "", "the local audit log (<data-dir>/audit.log), checked offline")
	dataDir := fs.String("data-dir", "", "data dir whose keys the chain must account for (default: the log's directory)")
	vaultMode := fs.Bool("vault", false, "check the chain in Vault KV with the auditor's own token (VAULT_ADDR; --token, KEYD_TOKEN or VAULT_TOKEN)")
	chainOnly := fs.Bool("chain-only", false, "with --file: check the chain alone and exit 0 when it is intact, although no keys (and no recorded head) could be reconciled with it")
	vf := vaultFlags(fs, []string{"KEYD_TOKEN", "VAULT_TOKEN"}) // the auditor's token, as for the other client commands
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	if (*file == "") == !*vaultMode {
		fmt.Fprintln(stderr, "keyd audit verify: give exactly one of --file PATH or --vault")
		return 2
	}
	if *vaultMode {
		if err := verifyVaultChain(ctx, vf); err != nil {
			fmt.Fprintln(stderr, "keyd audit verify:", err)
			return 1
		}
		fmt.Fprintln(stdout, "audit chain intact")
		return 0
	}
	return verifyFileChain(ctx, *file, *dataDir, *chainOnly, stdout, stderr)
}

// verifyFileChain is `keyd audit verify --file`: the chain, then the keys and
// the head recorded in the data dir. It prints what it read (records, head
// seq and hash, to pin elsewhere) and says plainly when it had nothing to
// reconcile with: a copy of the log alone cannot show that its tail was cut.
func verifyFileChain(ctx context.Context, path, dataDir string, chainOnly bool, stdout, stderr io.Writer) int {
	failf := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "keyd audit verify: "+format+"\n", args...)
		return 1
	}
	fc, err := inspectFileChain(ctx, path, dataDir, chainOnly)
	if err != nil {
		return failf("%v", err)
	}
	v := fc.Verification
	fmt.Fprintf(stdout, "checked %s: %d records, head seq %d hash %s\n", path, v.Records, v.HeadSeq, cmp.Or(v.HeadHash, "(none)"))
	for _, n := range fc.notes {
		fmt.Fprintln(stdout, "note:", n)
	}
	if err := v.Err(); err != nil {
		return failf("%v", err)
	}
	switch {
	case fc.why == "":
		fmt.Fprintf(stdout, "reconciled with %d key versions, %d propagation decisions and the head (seq %d) recorded in %s\n", len(v.Versions), len(fc.decisions), fc.head.Seq, fc.dataDir)
		fmt.Fprintln(stdout, "audit chain intact")
		return 0
	case chainOnly:
		fmt.Fprintln(stdout, "audit chain intact (chain only: not reconciled with any keys; pin the head seq and hash above to detect a cut-off tail later)")
		return 0
	}
	fmt.Fprintln(stdout, "chain links intact, but NOT reconciled with the keys")
	return failf("key reconciliation was not possible: %s; give --data-dir, or --chain-only to check the chain alone", fc.why)
}

// fileChain is what `keyd audit verify --file` and `keyd audit report
// --file` read and found: one loader, so the two never disagree.
type fileChain struct {
	audit.Verification
	dataDir string
	head    *audit.Head
	notes   []string // the key store's problems
	// decisions are the propagation decisions stored in the data dir,
	// each of which the chain must record.
	decisions []audit.Decision
	// why says why reconciling with the keys and the head was not
	// possible; "" when it was.
	why string
}

// inspectFileChain checks the log at path with what the data dir holds:
// the keys (read only, nothing is moved) and the head keyd recorded beside
// them. What it could not check is in NotChecked (and why).
func inspectFileChain(ctx context.Context, path, dataDir string, chainOnly bool) (fileChain, error) {
	if _, err := os.Stat(path); err != nil {
		return fileChain{}, err
	}
	fc := fileChain{dataDir: cmp.Or(dataDir, filepath.Dir(path))}
	var versions []audit.KeyVersion
	b, err := local.OpenReadOnly(fc.dataDir)
	switch {
	case chainOnly:
		fc.why = "--chain-only"
	case err != nil:
		fc.why = fmt.Sprintf("no key store at %s (%v): a copy of the log without its data dir, or --data-dir pointing elsewhere", filepath.Join(fc.dataDir, "keys"), err)
	default:
		if versions, err = server.HeldVersions(ctx, b); err != nil {
			return fileChain{}, fmt.Errorf("read the keys in %s: %w", fc.dataDir, err)
		}
		fc.notes = b.Problems()
		headPath := filepath.Join(fc.dataDir, "keys", "audit-head.json")
		if fc.head, err = audit.ReadHead(headPath); err != nil {
			return fileChain{}, err
		}
		if fc.head == nil {
			fc.why = fmt.Sprintf("%s holds no audit head (keyd records one beside the keys at every event): a tail cut after the last key event would pass", headPath)
		}
	}
	// The propagation decisions stored beside the keys, read before the
	// events (as the keys): each must have its event.
	if fc.why == "" {
		if fc.decisions, err = server.StoredDecisions(ctx, local.OpenPropagationReadOnly(fc.dataDir), time.Now()); err != nil {
			return fileChain{}, fmt.Errorf("read the propagation decisions in %s: %w", fc.dataDir, err)
		}
	}
	fc.Verification, err = audit.InspectFile(path, versions, fc.head)
	if err != nil {
		return fileChain{}, err
	}
	if fc.why == "" {
		fc.CheckDecisions(fc.decisions)
	}
	fc.Incomplete = fc.why
	switch {
	case versions == nil:
		fc.NotChecked = append(fc.NotChecked, "reconciliation with the keys held: "+fc.why)
	case fc.head == nil:
		fc.NotChecked = append(fc.NotChecked, "a cut-off tail: "+fc.why)
	}
	return fc, nil
}
