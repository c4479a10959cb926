package main

import (
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

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// auditEvents records lifecycle transitions in the audit chain.
type auditEvents struct{ log *audit.Log }

func (a auditEvents) Emit(ctx context.Context, e rotation.Event) error {
	_, err := a.log.Record(ctx, audit.Event{
		Type: audit.Type(e.Type), KID: e.KID, Version: e.Version, Actor: e.Actor, Reason: e.Reason,
	})
	return err
}

// auditTrail serves GET /v1/audit: a page of events, and whether the whole
// chain verifies and accounts for every key the backend holds.
type auditTrail struct {
	log     *audit.Log
	backend signer.Backend
}

func (a auditTrail) Page(ctx context.Context, since int64) (any, bool, error) {
	all, err := a.log.Events(ctx, 0)
	if err != nil {
		return nil, false, fmt.Errorf("read audit chain: %w: %w", err, signer.ErrUnavailable)
	}
	valid := audit.Verify(all) == nil
	if valid {
		if versions, err := heldVersions(ctx, a.backend); err == nil {
			valid = audit.Reconcile(all, versions) == nil
		}
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
	vf := vaultFlags(fs, []string{"KEYD_TOKEN", "VAULT_TOKEN"}) // the auditor's token, as for the other client commands
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	if (*file == "") == !*vaultMode {
		fmt.Fprintln(stderr, "keyd audit verify: give exactly one of --file PATH or --vault")
		return 2
	}
	var err error
	if *vaultMode {
		err = verifyVaultChain(ctx, vf)
	} else {
		err = verifyFileChain(ctx, *file, *dataDir)
	}
	if err != nil {
		fmt.Fprintln(stderr, "keyd audit verify:", err)
		return 1
	}
	fmt.Fprintln(stdout, "audit chain intact")
	return 0
}

func verifyFileChain(ctx context.Context, path, dataDir string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	if dataDir == "" {
		dataDir = filepath.Dir(path)
	}
	var versions []audit.KeyVersion
	if _, err := os.Stat(filepath.Join(dataDir, "keys")); err == nil {
		b, err := local.New(dataDir)
		if err != nil {
			return err
		}
		if versions, err = heldVersions(ctx, b); err != nil {
			return fmt.Errorf("read the keys in %s: %w", dataDir, err)
		}
	}
	return audit.VerifyFile(path, versions)
}
