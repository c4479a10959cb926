package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/vaulttest"
	"github.com/openedx-keyd/keyd/policies"
)

func TestBootstrapIdempotent(t *testing.T) {
	e := setup(t, signer.RS512) // first run
	ctx := context.Background()

	lines, err := Bootstrap(ctx, e.root, e.bootstrapOptions())
	if err != nil {
		t.Fatal(err)
	}
	if contains(lines, "created") || contains(lines, "written") || contains(lines, "turned off") {
		t.Errorf("second bootstrap changed something:\n%s", strings.Join(lines, "\n"))
	}
	for _, want := range []string{"transit mount " + e.mount + "/: exists", "kv v2 mount " + e.kv + "/: exists", "(rsa-2048): exists",
		"policy keyd-admin: unchanged", "policy keyd-auditor: unchanged", "policy keyd-lms-signer: unchanged", "policy keyd-server: unchanged"} {
		if !contains(lines, want) {
			t.Errorf("second bootstrap does not say %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}

	ki := e.keyInfo(t)
	if ki.Type != "rsa-2048" || ki.Exportable || ki.AllowPlaintextBackup || ki.DeletionAllowed || ki.LatestVersion != 1 {
		t.Errorf("key after bootstrap: %+v", ki)
	}
}

func TestBootstrapFresh(t *testing.T) {
	srv := vaulttest.StartShared(t)
	root := srv.Client(t, srv.RootToken)
	opts := BootstrapOptions{Algorithm: signer.EdDSA, Mount: vaulttest.UniqueName("transit"), Key: "k", KVMount: vaulttest.UniqueName("kv")}
	lines, err := Bootstrap(context.Background(), root, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"transit mount " + opts.Mount + "/: created", "key " + opts.Mount + "/keys/k (ed25519): created", "kv v2 mount " + opts.KVMount + "/: created", "policy keyd-server: "} {
		if !contains(lines, want) {
			t.Errorf("bootstrap does not say %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	// The KV mount is usable at once.
	if _, err := root.KVv2(opts.KVMount).Put(context.Background(), "probe", map[string]any{"a": "b"}); err != nil {
		t.Fatalf("kv v2 right after bootstrap: %v", err)
	}
}

func TestBootstrapRefusesWrongSetup(t *testing.T) {
	e := setup(t, signer.RS256)
	ctx := context.Background()

	opts := e.bootstrapOptions()
	opts.Algorithm = signer.ES256
	_, err := Bootstrap(ctx, e.root, opts)
	if err == nil || !strings.Contains(err.Error(), "rsa-2048") || !strings.Contains(err.Error(), "ecdsa-p256") {
		t.Errorf("wrong key type: error %v, want one naming rsa-2048 and ecdsa-p256", err)
	}

	// RS512 uses the same rsa-2048 key as RS256.
	opts.Algorithm = signer.RS512
	if _, err := Bootstrap(ctx, e.root, opts); err != nil {
		t.Errorf("RS512 on an rsa-2048 key: %v", err)
	}

	v1 := vaulttest.UniqueName("kv1")
	if err := e.root.Sys().Mount(v1, &api.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	opts.KVMount = v1
	_, err = Bootstrap(ctx, e.root, opts)
	if err == nil || !strings.Contains(err.Error(), "kv version 1") {
		t.Errorf("kv v1 mount: error %v, want one saying it is kv version 1", err)
	}

	other := vaulttest.UniqueName("kv")
	if err := e.root.Sys().Mount(other, &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	opts = e.bootstrapOptions()
	opts.Mount = other // a kv mount where transit is expected
	if _, err := Bootstrap(ctx, e.root, opts); err == nil || !strings.Contains(err.Error(), "not transit") {
		t.Errorf("kv mount as transit: error %v", err)
	}
}

func TestSignAllAlgorithms(t *testing.T) {
	for _, alg := range signer.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			e := setup(t, alg)
			keys := e.create(t, 1)
			if len(keys) != 1 || !keys[0].HasRecord || keys[0].Algorithm != alg {
				t.Fatalf("keys after bootstrap: %+v", keys)
			}
			lms := e.srv.Token(t, policies.LMSSigner)
			tok, err := signJWT(e.backend, lms, keys[0])
			if err != nil {
				t.Fatalf("LMS token cannot sign: %v", err)
			}
			verifyJWT(t, tok, keys[0])
		})
	}
}

func TestSignRefusedForOtherTokens(t *testing.T) {
	e := setup(t, signer.ES256)
	k := e.create(t, 1)[0]

	denied := map[string]string{
		"IDA (default policy)": e.srv.Token(t),
		"keyd-server":          e.serverToken,
		"keyd-admin":           e.srv.Token(t, policies.Admin),
		"keyd-auditor":         e.srv.Token(t, policies.Auditor),
	}
	for name, tok := range denied {
		_, err := signJWT(e.backend, tok, k)
		if !errors.Is(err, signer.ErrPermissionDenied) {
			t.Errorf("%s: error %v, want ErrPermissionDenied", name, err)
		}
	}

	revoked := e.srv.Token(t, policies.LMSSigner)
	if err := e.root.Auth().Token().RevokeTree(revoked); err != nil {
		t.Fatal(err)
	}
	unknown := map[string]string{"garbage": "hvs.not-a-token", "revoked": revoked, "empty": ""}
	for name, tok := range unknown {
		_, err := signJWT(e.backend, tok, k)
		if !errors.Is(err, signer.ErrUnauthenticated) {
			t.Errorf("%s token: error %v, want ErrUnauthenticated", name, err)
		}
	}

	// Version 0 would let Vault pick its newest version: never sent.
	_, err := e.backend.Sign(context.Background(), signer.Credential{Token: e.srv.Token(t, policies.LMSSigner)}, 0, e.alg, []byte("x"))
	wantErr(t, err, signer.ErrNoKey)
}

// keyd's own token cannot sign, export, back up, or loosen the key; it can
// only move the min_* versions, and its audit entries are create-only.
func TestServerPolicy(t *testing.T) {
	e := setup(t, signer.RS512)
	e.create(t, 2)
	ctx := context.Background()
	server := e.srv.Client(t, e.serverToken)
	keyPath := e.mount + "/keys/" + e.key

	_, err := server.Logical().WriteWithContext(ctx, e.mount+"/sign/"+e.key, map[string]any{"input": "eA=="})
	wantStatus(t, "keyd-server signs", err, 403)
	_, err = server.Logical().WriteWithContext(ctx, e.mount+"/sign/"+e.key+"/sha2-512", map[string]any{"input": "eA=="})
	wantStatus(t, "keyd-server signs with a hash in the URL", err, 403)
	_, err = server.Logical().ReadWithContext(ctx, e.mount+"/export/signing-key/"+e.key)
	wantStatus(t, "keyd-server exports", err, 403)
	_, err = server.Logical().ReadWithContext(ctx, e.mount+"/backup/"+e.key)
	wantStatus(t, "keyd-server backs up", err, 403)
	// Not even root can export: the key is not exportable.
	if _, err = e.root.Logical().ReadWithContext(ctx, e.mount+"/export/signing-key/"+e.key); err == nil {
		t.Error("root exported the key")
	}

	for _, p := range []map[string]any{
		{"exportable": true},
		{"deletion_allowed": true},
		{"allow_plaintext_backup": true},
		{"min_decryption_version": 1, "exportable": true},
	} {
		_, err = server.Logical().WriteWithContext(ctx, keyPath+"/config", p)
		wantStatus(t, fmt.Sprintf("keyd-server sets %v", p), err, 403)
	}
	ki := e.keyInfo(t)
	if ki.Exportable || ki.DeletionAllowed || ki.AllowPlaintextBackup {
		t.Fatalf("key loosened: %+v", ki)
	}
	_, err = server.Logical().DeleteWithContext(ctx, keyPath)
	wantStatus(t, "keyd-server deletes the key", err, 403)

	if _, err = server.Logical().WriteWithContext(ctx, keyPath+"/config", map[string]any{"min_encryption_version": 2, "min_decryption_version": 1}); err != nil {
		t.Fatalf("keyd-server sets min_*: %v", err)
	}
	if ki := e.keyInfo(t); ki.MinEncryptionVersion != 2 {
		t.Errorf("min_encryption_version = %d, want 2", ki.MinEncryptionVersion)
	}

	// Records and audit entries: created once, never rewritten or deleted.
	kv := server.KVv2(e.kv)
	_, err = kv.Put(ctx, "records/1", map[string]any{"version": 1})
	wantStatus(t, "keyd-server rewrites a record", err, 403)
	if _, err = kv.Put(ctx, "audit/1", map[string]any{"seq": 1}, api.WithCheckAndSet(0)); err != nil {
		t.Fatalf("keyd-server creates an audit entry: %v", err)
	}
	_, err = kv.Put(ctx, "audit/1", map[string]any{"seq": 2})
	wantStatus(t, "keyd-server updates an audit entry", err, 403)
	err = kv.Delete(ctx, "audit/1")
	wantStatus(t, "keyd-server deletes an audit entry", err, 403)
	if _, err = server.Logical().ListWithContext(ctx, e.kv+"/metadata/audit"); err != nil {
		t.Errorf("keyd-server lists the audit: %v", err)
	}
	// The role markers are not keyd-server's.
	_, err = server.Logical().ReadWithContext(ctx, e.kv+"/data/roles/admin")
	wantStatus(t, "keyd-server reads the admin marker", err, 403)
}

func TestCheckCannotSign(t *testing.T) {
	e := setup(t, signer.RS512)
	ctx := context.Background()
	if err := e.backend.CheckCannotSign(ctx); err != nil {
		t.Errorf("keyd-server token: %v", err)
	}
	for name, tok := range map[string]string{"root": e.srv.RootToken, "LMS": e.srv.Token(t, policies.LMSSigner)} {
		b := e.newBackend(t, e.srv.Client(t, tok), nil)
		err := b.CheckCannotSign(ctx)
		if !errors.Is(err, ErrTokenCanSign) || !strings.Contains(err.Error(), "refusing to start") {
			t.Errorf("%s token: error %v, want ErrTokenCanSign", name, err)
		}
	}
}

// Two replicas race to create each version: Vault ends up with exactly one
// new version per round, and the loser is told ErrAlreadyRotated.
func TestCreateExactlyOnce(t *testing.T) {
	e := setup(t, signer.EdDSA)
	ctx := context.Background()
	replicas := []*Backend{
		e.newBackend(t, e.srv.Client(t, e.serverToken), nil),
		e.newBackend(t, e.srv.Client(t, e.srv.Token(t, policies.Server)), nil),
	}
	for v := 1; v <= 5; v++ {
		errs := make([]error, len(replicas))
		var wg sync.WaitGroup
		for i, r := range replicas {
			wg.Go(func() { _, errs[i] = r.Create(ctx, e.record(v)) })
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, signer.ErrAlreadyRotated):
				t.Fatalf("version %d: %v", v, err)
			}
		}
		if won != 1 {
			t.Fatalf("version %d: %d replicas created it (errors %v)", v, won, errs)
		}
		if got := e.keyInfo(t).LatestVersion; got != v {
			t.Fatalf("after round %d vault's newest version is %d", v, got)
		}
	}
	for _, r := range replicas {
		keys, err := r.Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 5 {
			t.Fatalf("%d keys, want 5", len(keys))
		}
		for i, k := range keys {
			if k.Version != i+1 || !k.HasRecord || k.Algorithm != signer.EdDSA {
				t.Errorf("key %d: version %d, record %v, alg %s", i, k.Version, k.HasRecord, k.Algorithm)
			}
		}
	}

	// Create must follow the newest version exactly.
	_, err := replicas[0].Create(ctx, e.record(3))
	wantErr(t, err, signer.ErrAlreadyRotated)
	if _, err := replicas[0].Create(ctx, e.record(8)); err == nil || errors.Is(err, signer.ErrAlreadyRotated) {
		t.Errorf("create past the newest+1: error %v", err)
	}
	rec := e.record(6)
	rec.Algorithm = signer.RS256
	if _, err := replicas[0].Create(ctx, rec); err == nil || !strings.Contains(err.Error(), "ed25519") {
		t.Errorf("RS256 on an ed25519 key: error %v", err)
	}
}

func TestRotationClaim(t *testing.T) {
	e := setup(t, signer.ES256)
	e.create(t, 1)
	ctx := context.Background()
	kv := e.root.KVv2(e.kv)

	// A live claim by another replica: this one creates nothing.
	if _, err := kv.Put(ctx, claimPath(2), map[string]any{"holder": "other", "at": time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	_, err := e.backend.Create(ctx, e.record(2))
	wantErr(t, err, signer.ErrAlreadyRotated)
	if got := e.keyInfo(t).LatestVersion; got != 1 {
		t.Fatalf("newest version %d after a refused create", got)
	}

	// The holder died: 61 s later its claim is taken over.
	later := e.newBackend(t, e.srv.Client(t, e.serverToken), clock.NewFake(time.Now().Add(claimTimeout+time.Second)))
	k, err := later.Create(ctx, e.record(2))
	if err != nil {
		t.Fatalf("take over a stale claim: %v", err)
	}
	if k.Version != 2 || !k.HasRecord {
		t.Errorf("created %+v", k)
	}
	claim, err := kv.Get(ctx, claimPath(2))
	if err != nil {
		t.Fatal(err)
	}
	if claim.Data["holder"] != later.holder {
		t.Errorf("claim holder %v, want %s", claim.Data["holder"], later.holder)
	}
}

// A crash between rotate and the record write leaves a version without a
// record: Keys reports it with Vault's creation time.
func TestVersionWithoutRecord(t *testing.T) {
	e := setup(t, signer.RS256)
	e.create(t, 1)
	ctx := context.Background()
	if _, err := e.root.Logical().Write(e.mount+"/keys/"+e.key+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	keys, err := e.backend.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !keys[0].HasRecord || keys[1].HasRecord {
		t.Fatalf("keys: %+v", keys)
	}
	k := keys[1]
	if k.Version != 2 || k.Algorithm != signer.RS256 || k.CreatedAt.IsZero() || !k.ActivatesAt.Equal(k.CreatedAt) || time.Since(k.CreatedAt) > time.Minute {
		t.Errorf("derived record: %+v", k.Record)
	}
	_, err = e.backend.Create(ctx, e.record(2))
	wantErr(t, err, signer.ErrAlreadyRotated)
}

func TestPinAndDestroy(t *testing.T) {
	e := setup(t, signer.RS512)
	keys := e.create(t, 3)
	ctx := context.Background()
	lms := e.srv.Token(t, policies.LMSSigner)

	if err := e.backend.PinSigning(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := e.backend.PinSigning(ctx, 1); err != nil { // never lowers
		t.Fatal(err)
	}
	if got := e.keyInfo(t).MinEncryptionVersion; got != 2 {
		t.Fatalf("min_encryption_version = %d, want 2", got)
	}
	_, err := signJWT(e.backend, lms, keys[0])
	wantErr(t, err, signer.ErrNoKey) // Vault itself refuses version 1
	for _, k := range keys[1:] {
		tok, err := signJWT(e.backend, lms, k)
		if err != nil {
			t.Fatalf("sign with version %d: %v", k.Version, err)
		}
		verifyJWT(t, tok, k)
	}

	if err := e.backend.DestroyBelow(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := e.backend.DestroyBelow(ctx, 3); err != nil { // idempotent
		t.Fatal(err)
	}
	ki := e.keyInfo(t)
	if ki.MinDecryptionVersion != 3 || ki.MinEncryptionVersion != 3 || ki.MinAvailableVersion != 3 || len(ki.Keys) != 1 {
		t.Errorf("after DestroyBelow(3): %+v", ki)
	}
	after, err := e.backend.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0].Version != 3 {
		t.Fatalf("keys after DestroyBelow(3): %+v", after)
	}
	_, err = signJWT(e.backend, lms, keys[1])
	wantErr(t, err, signer.ErrNoKey)

	if err := e.backend.DestroyBelow(ctx, 9); !errors.Is(err, signer.ErrNoKey) {
		t.Errorf("DestroyBelow past the newest: %v", err)
	}
	if err := e.backend.PinSigning(ctx, 9); !errors.Is(err, signer.ErrNoKey) {
		t.Errorf("PinSigning past the newest: %v", err)
	}
}

// Concurrent sign requests with mixed tokens on one Backend: every LMS call
// succeeds and every other call is refused, so no request ever signs with
// another request's token.
func TestMixedTokenRace(t *testing.T) {
	e := setup(t, signer.ES256)
	k := e.create(t, 1)[0]
	tokens := map[string]string{
		"lms":   e.srv.Token(t, policies.LMSSigner),
		"ida":   e.srv.Token(t),
		"admin": e.srv.Token(t, policies.Admin),
	}
	const workers, calls = 12, 8
	type result struct {
		kind, tok string
		err       error
	}
	results := make(chan result, len(tokens)*workers*calls)
	var wg sync.WaitGroup
	for kind, token := range tokens {
		for range workers {
			wg.Go(func() {
				for range calls {
					tok, err := signJWT(e.backend, token, k)
					results <- result{kind, tok, err}
				}
			})
		}
	}
	wg.Wait()
	close(results)
	counts := map[string]int{}
	for r := range results {
		counts[r.kind]++
		switch {
		case r.kind == "lms" && r.err != nil:
			t.Errorf("LMS call refused: %v", r.err)
		case r.kind == "lms":
			verifyJWT(t, r.tok, k)
		case !errors.Is(r.err, signer.ErrPermissionDenied):
			t.Errorf("%s call: token %q, error %v; want ErrPermissionDenied", r.kind, r.tok, r.err)
		}
	}
	for kind := range tokens {
		if counts[kind] != workers*calls {
			t.Errorf("%s: %d calls, want %d", kind, counts[kind], workers*calls)
		}
	}
}

// Vault behind a proxy that is cut, then stalled, then restored: sign fails
// with ErrUnavailable within a second, and works again afterwards without
// a new Backend.
func TestOutage(t *testing.T) {
	e := setup(t, signer.RS256)
	k := e.create(t, 1)[0]
	proxy := vaulttest.NewProxy(t, e.srv.Addr)
	// keyd's own client as serve makes it: through a Router.
	c, _, err := NewRoutedClient([]string{proxy.Addr()}, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(e.serverToken)
	b := e.newBackend(t, c, nil)
	lms := e.srv.Token(t, policies.LMSSigner)
	if _, err := signJWT(b, lms, k); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	for name, fail := range map[string]func(){"cut": proxy.Cut, "stall": proxy.Stall} {
		fail()
		start := time.Now()
		_, err := signJWT(b, lms, k)
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: sign failed after %s, want within 1s", name, d)
		}
		if !errors.Is(err, signer.ErrUnavailable) {
			t.Errorf("%s: error %v, want ErrUnavailable", name, err)
		}
		if name == "cut" {
			_, err = b.Keys(context.Background())
			wantErr(t, err, signer.ErrUnavailable)
		}
		_, err = b.Authorize(context.Background(), lms, auth.RoleSigner)
		if !errors.Is(err, signer.ErrUnavailable) {
			t.Errorf("%s: authorize error %v, want ErrUnavailable", name, err)
		}

		proxy.Restore()
		tok, err := signJWT(b, lms, k)
		if err != nil {
			t.Fatalf("%s, then restored: %v", name, err)
		}
		verifyJWT(t, tok, k)
	}
}

func TestAuthorize(t *testing.T) {
	e := setup(t, signer.EdDSA)
	ctx := context.Background()
	admin := e.srv.Token(t, policies.Admin)
	auditor := e.srv.Token(t, policies.Auditor)
	lms := e.srv.Token(t, policies.LMSSigner)
	ida := e.srv.Token(t)

	for _, tc := range []struct {
		name, token string
		role        auth.Role
		want        error
	}{
		{"admin", admin, auth.RoleAdmin, nil},
		{"auditor", auditor, auth.RoleAuditor, nil},
		{"signer", lms, auth.RoleSigner, nil},
		{"root as admin", e.srv.RootToken, auth.RoleAdmin, nil},
		{"admin as auditor", admin, auth.RoleAuditor, signer.ErrPermissionDenied},
		{"auditor as admin", auditor, auth.RoleAdmin, signer.ErrPermissionDenied},
		{"admin as signer", admin, auth.RoleSigner, signer.ErrPermissionDenied},
		{"lms as admin", lms, auth.RoleAdmin, signer.ErrPermissionDenied},
		{"ida as auditor", ida, auth.RoleAuditor, signer.ErrPermissionDenied},
		{"keyd-server as signer", e.serverToken, auth.RoleSigner, signer.ErrPermissionDenied},
		{"keyd-server as admin", e.serverToken, auth.RoleAdmin, signer.ErrPermissionDenied},
		{"unknown", "hvs.unknown", auth.RoleAdmin, signer.ErrUnauthenticated},
		{"empty", "", auth.RoleAuditor, signer.ErrUnauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.backend.Authorize(ctx, tc.token, tc.role)
			if tc.want != nil {
				wantErr(t, err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Role != tc.role || !strings.HasPrefix(p.Actor, "role:"+string(tc.role)+" accessor:") || !strings.Contains(p.Actor, " entity:") {
				t.Errorf("principal %+v", p)
			}
			if strings.Contains(p.Actor, tc.token) {
				t.Errorf("actor %q holds the token", p.Actor)
			}
		})
	}
	if _, err := e.backend.Authorize(ctx, admin, "owner"); err == nil {
		t.Error("unknown role accepted")
	}

	// A positive answer is reused for a while: no Vault call.
	if _, err := e.backend.Authorize(ctx, admin, auth.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	calls := e.backend.principals
	calls.mu.Lock()
	n := len(calls.m)
	calls.mu.Unlock()
	if n == 0 {
		t.Error("no cached principal")
	}
}

func TestIntent(t *testing.T) {
	e := setup(t, signer.RS512)
	ctx := context.Background()
	b := e.backend
	if in, err := b.LoadIntent(ctx); err != nil || in != nil {
		t.Fatalf("no intent yet: %v, %v", in, err)
	}
	want := signer.Intent{After: 3, Reason: "key leaked", Actor: "role:admin accessor:x entity:none", At: time.Now().UTC().Truncate(time.Millisecond)}
	for range 2 { // save, clear, save again
		if err := b.SaveIntent(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := b.LoadIntent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil || got.After != want.After || got.Reason != want.Reason || got.Actor != want.Actor || !got.At.Equal(want.At) {
			t.Fatalf("intent %+v, want %+v", got, want)
		}
		if err := b.ClearIntent(ctx); err != nil {
			t.Fatal(err)
		}
		if in, err := b.LoadIntent(ctx); err != nil || in != nil {
			t.Fatalf("after clear: %v, %v", in, err)
		}
	}
	if err := b.ClearIntent(ctx); err != nil {
		t.Errorf("clear twice: %v", err)
	}
}
