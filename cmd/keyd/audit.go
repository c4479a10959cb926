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
	"sort"
	"strconv"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// auditEvents records lifecycle transitions in the audit chain.
type auditEvents struct{ log *audit.Log }

func (a auditEvents) Emit(ctx context.Context, e rotation.Event) error {
	_, err := a.log.Record(ctx, audit.Event{
		Type: auditType(e.Type), KID: e.KID, Version: e.Version, Actor: e.Actor, Reason: e.Reason,
	})
	return err
}

// auditType is the audit event type of a lifecycle event: the same name
// (TestEventTypesAreAuditTypes keeps the two lists in step).
func auditType(t rotation.EventType) audit.Type { return audit.Type(t) }

// auditTrail serves GET /v1/audit: a page of events, and whether the whole
// chain verifies and accounts for every key the backend holds and every
// propagation decision its store holds.
type auditTrail struct {
	log       *audit.Log
	backend   signer.Backend
	decisions decisionSource // nil: the mode keeps none
	clock     clock.Clock    // nil: the real clock
}

// decisionSource lists every propagation decision a store holds.
type decisionSource interface {
	Decisions(ctx context.Context) (signer.Observed, error)
}

// decisionGrace is how long after its time a stored propagation decision
// may still lack its event: keyd records the event right after storing the
// decision (or retries it while the trail refuses it).
const decisionGrace = time.Minute

// storedDecisions is what the chain must record for the decisions src
// holds that are older than decisionGrace at now.
func storedDecisions(ctx context.Context, src decisionSource, now time.Time) ([]audit.Decision, error) {
	obs, err := src.Decisions(ctx)
	if err != nil {
		return nil, err
	}
	var out []audit.Decision
	for _, c := range obs.Confirmations {
		if now.Sub(c.At) >= decisionGrace {
			out = append(out, audit.Decision{Type: audit.PropagationConfirmed, Version: c.Version, Reason: rotation.ConfirmedReason(c)})
		}
	}
	for v, a := range obs.Activations {
		if len(a.Unconfirmed) > 0 && now.Sub(a.At) >= decisionGrace {
			out = append(out, audit.Decision{Type: audit.ActivationUnconfirmed, Version: v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].Type+audit.Type(out[i].Reason) < out[j].Type+audit.Type(out[j].Reason)
	})
	return out, nil
}

func (a auditTrail) Page(ctx context.Context, since int64) ([]audit.Event, bool, error) {
	// The keys and decisions first: a key destroyed meanwhile then already
	// has its destroyed event (recorded before the deletion) in the events
	// read next.
	versions, verr := heldVersions(ctx, a.backend)
	var decisions []audit.Decision
	var derr error
	if a.decisions != nil {
		decisions, derr = storedDecisions(ctx, a.decisions, cmp.Or[clock.Clock](a.clock, clock.Real{}).Now())
	}
	all, err := a.log.Events(ctx, 0)
	if err != nil {
		return nil, false, fmt.Errorf("read audit chain: %w: %w", err, signer.ErrUnavailable)
	}
	// Problems: lines that are not events, a log that disagrees with the
	// head kept beside the keys (deleted, replaced, cut off).
	valid := audit.Verify(all) == nil && len(a.log.Problems()) == 0
	if valid && verr == nil {
		valid = audit.Reconcile(all, versions) == nil
	}
	if valid && derr == nil {
		valid = audit.ReconcileDecisions(all, decisions) == nil
	}
	page := make([]audit.Event, 0, len(all))
	for _, e := range all {
		if e.Seq > since {
			page = append(page, e)
		}
	}
	return page, valid, nil
}

// heldVersions lists the key versions a backend holds, with their kids.
func heldVersions(ctx context.Context, b interface {
	Keys(context.Context) ([]signer.Key, error)
}) ([]audit.KeyVersion, error) {
	keys, err := b.Keys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]audit.KeyVersion, 0, len(keys))
	for _, k := range keys {
		kid, err := signer.KID(k.Public)
		if err != nil {
			return nil, err
		}
		out = append(out, audit.KeyVersion{Version: k.Version, KID: kid})
	}
	// Versions whose unreadable file the local store set aside did not
	// vanish unseen: the audit need not account for them as destroyed.
	if q, ok := b.(interface{ QuarantinedVersions() []int }); ok {
		for _, v := range q.QuarantinedVersions() {
			out = append(out, audit.KeyVersion{Version: v, Quarantined: true})
		}
	}
	return out, nil
}

// cmdAudit is `keyd audit` (list) and `keyd audit verify`.
func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "verify" {
		return cmdAuditVerify(ctx, args[1:], stdout, stderr)
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
	var out struct {
		Events     []audit.Event `json:"events"`
		ChainValid bool          `json:"chain_valid"`
	}
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
	if _, err := os.Stat(path); err != nil {
		return failf("%v", err)
	}
	dataDir = cmp.Or(dataDir, filepath.Dir(path))
	// What the data dir holds: the keys (read only, nothing is moved) and
	// the head keyd recorded beside them. why says why reconciling is not
	// possible; "" when it is.
	var versions []audit.KeyVersion
	var head *audit.Head
	var notes []string
	why := ""
	b, err := local.OpenReadOnly(dataDir)
	switch {
	case chainOnly:
		why = "--chain-only"
	case err != nil:
		why = fmt.Sprintf("no key store at %s (%v): a copy of the log without its data dir, or --data-dir pointing elsewhere", filepath.Join(dataDir, "keys"), err)
	default:
		if versions, err = heldVersions(ctx, b); err != nil {
			return failf("read the keys in %s: %v", dataDir, err)
		}
		notes = b.Problems()
		headPath := filepath.Join(dataDir, "keys", "audit-head.json")
		if head, err = audit.ReadHead(headPath); err != nil {
			return failf("%v", err)
		}
		if head == nil {
			why = fmt.Sprintf("%s holds no audit head (keyd records one beside the keys at every event): a tail cut after the last key event would pass", headPath)
		}
	}
	// The propagation decisions stored beside the keys, before the events
	// (as the keys): each must have its event.
	var decisions []audit.Decision
	if why == "" {
		if decisions, err = storedDecisions(ctx, local.OpenPropagationReadOnly(dataDir), time.Now()); err != nil {
			return failf("read the propagation decisions in %s: %v", dataDir, err)
		}
	}
	sum, err := audit.CheckFile(path, versions, head)
	fmt.Fprintf(stdout, "checked %s: %d records, head seq %d hash %s\n", path, sum.Records, sum.HeadSeq, cmp.Or(sum.HeadHash, "(none)"))
	for _, n := range notes {
		fmt.Fprintln(stdout, "note:", n)
	}
	if err == nil && why == "" {
		err = reconcileDecisionsOfFile(path, decisions)
	}
	if err != nil {
		return failf("%v", err)
	}
	switch {
	case why == "":
		fmt.Fprintf(stdout, "reconciled with %d key versions, %d propagation decisions and the head (seq %d) recorded in %s\n", len(versions), len(decisions), head.Seq, dataDir)
		fmt.Fprintln(stdout, "audit chain intact")
		return 0
	case chainOnly:
		fmt.Fprintln(stdout, "audit chain intact (chain only: not reconciled with any keys; pin the head seq and hash above to detect a cut-off tail later)")
		return 0
	}
	fmt.Fprintln(stdout, "chain links intact, but NOT reconciled with the keys")
	return failf("key reconciliation was not possible: %s; give --data-dir, or --chain-only to check the chain alone", why)
}

// reconcileDecisionsOfFile checks that the audit log at path (a chain
// CheckFile found intact) records every decision.
func reconcileDecisionsOfFile(path string, decisions []audit.Decision) error {
	if len(decisions) == 0 {
		return nil
	}
	events, err := audit.ReadFileEvents(path)
	if err != nil {
		return err
	}
	return audit.ReconcileDecisions(events, decisions)
}
