package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// clientTTL is how long a caller's cloned client is kept for reuse.
const clientTTL = 10 * time.Minute

// signParams returns the transit sign parameters that make Vault's
// signature a valid JWS signature for alg.
func signParams(alg signer.Algorithm) (map[string]any, error) {
	switch alg {
	case signer.RS512:
		return map[string]any{"hash_algorithm": "sha2-512", "signature_algorithm": "pkcs1v15"}, nil
	case signer.RS256:
		return map[string]any{"hash_algorithm": "sha2-256", "signature_algorithm": "pkcs1v15"}, nil
	case signer.ES256:
		return map[string]any{"hash_algorithm": "sha2-256"}, nil
	case signer.EdDSA:
		return map[string]any{}, nil // pure Ed25519: Vault does not hash the input
	}
	return nil, fmt.Errorf("vault: unsupported algorithm %q", alg)
}

// Sign asks Vault to sign input with version v, using the caller's own token
// (cred.Token) and nothing else: Vault's policies decide whether the caller
// may sign. The result is the raw JWS signature (R||S for ES256).
//
// Errors: signer.ErrUnauthenticated for an unknown or expired token,
// signer.ErrPermissionDenied for a valid token Vault does not let sign,
// signer.ErrNoKey when Vault refuses the version (pinned out or gone),
// signer.ErrUnavailable when Vault cannot be reached (within about a second)
// or still has no active node when the sign timeout ends.
func (b *Backend) Sign(ctx context.Context, cred signer.Credential, v int, alg signer.Algorithm, input []byte) ([]byte, error) {
	if cred.Token == "" {
		return nil, fmt.Errorf("%w: no vault token", signer.ErrUnauthenticated)
	}
	if v < 1 { // key_version 0 would mean "the newest", which may be pending
		return nil, fmt.Errorf("%w: version %d", signer.ErrNoKey, v)
	}
	params, err := signParams(alg)
	if err != nil {
		return nil, err
	}
	c, err := b.callerClient(cred.Token)
	if err != nil {
		return nil, err
	}
	k := laneKey{token: hashKey("lane", cred.Token), v: v, alg: alg}
	sig, err := b.batches.do(ctx, k, input, func(inputs [][]byte) []signResult {
		// The call serves several requests: it must not die with the first
		// one's context, only with the sign timeout, within which a Router
		// retries what Vault answers during a leader election.
		ctx, cancel := context.WithTimeout(Idempotent(context.WithoutCancel(ctx)), b.signTimeout)
		defer cancel()
		return b.signCall(ctx, c, v, params, inputs)
	})
	if err != nil && ctx.Err() != nil && !errors.Is(err, signer.ErrUnavailable) {
		// The request's budget ended before Vault answered.
		return nil, fmt.Errorf("%w: no answer from vault within the request's budget: %w", signer.ErrUnavailable, err)
	}
	return sig, err
}

// signCall signs inputs with version v in one transit call (batch_input when
// there are several) and returns one result per input.
func (b *Backend) signCall(ctx context.Context, c *api.Client, v int, params map[string]any, inputs [][]byte) []signResult {
	body := make(map[string]any, len(params)+3)
	for k, val := range params {
		body[k] = val
	}
	body["key_version"] = v
	body["marshaling_algorithm"] = "jws"
	if len(inputs) == 1 {
		body["input"] = base64.StdEncoding.EncodeToString(inputs[0])
	} else {
		items := make([]map[string]string, len(inputs))
		for i, in := range inputs {
			items[i] = map[string]string{"input": base64.StdEncoding.EncodeToString(in)}
		}
		body["batch_input"] = items
	}
	results := make([]signResult, len(inputs))
	fail := func(err error) []signResult {
		for i := range results {
			results[i].err = err
		}
		return results
	}
	sec, err := c.Logical().WriteWithContext(ctx, b.signPath(), body)
	if err != nil {
		if statusOf(err) >= 500 && b.refusesVersion(ctx, v) {
			return fail(fmt.Errorf("%w: vault refuses to sign with version %d (below min_encryption_version, trimmed, or not created)", signer.ErrNoKey, v))
		}
		return fail(b.callerError(ctx, c, "sign", err))
	}
	if sec == nil || sec.Data == nil {
		return fail(fmt.Errorf("vault: sign: empty answer"))
	}
	if len(inputs) == 1 {
		s, _ := sec.Data["signature"].(string)
		results[0].sig, results[0].err = decodeSignature(s, v)
		return results
	}
	items, _ := sec.Data["batch_results"].([]any)
	if len(items) != len(inputs) {
		return fail(fmt.Errorf("vault: sign: %d batch results for %d inputs", len(items), len(inputs)))
	}
	for i, it := range items {
		m, _ := it.(map[string]any)
		if e, _ := m["error"].(string); e != "" {
			results[i].err = fmt.Errorf("%w: vault refused to sign: %s", signer.ErrNoKey, e)
			continue
		}
		s, _ := m["signature"].(string)
		results[i].sig, results[i].err = decodeSignature(s, v)
	}
	return results
}

// decodeSignature takes the raw JWS signature out of "vault:v<N>:<base64url>".
func decodeSignature(s string, v int) ([]byte, error) {
	prefix := "vault:v" + strconv.Itoa(v) + ":"
	enc, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return nil, fmt.Errorf("vault: sign: signature does not start with %q", prefix)
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(enc, "="))
	if err != nil {
		return nil, fmt.Errorf("vault: sign: decode signature: %w", err)
	}
	return sig, nil
}

// refusesVersion reports whether the key's own settings forbid signing with
// version v. Vault answers such a sign request with a 500 (its "user error"
// is lost on the way), which would otherwise look like an outage.
func (b *Backend) refusesVersion(ctx context.Context, v int) bool {
	ctx, cancel := context.WithTimeout(ctx, b.callerTimeout)
	defer cancel()
	ki, err := b.readKey(ctx)
	if err != nil {
		return false
	}
	_, exists := ki.Keys[strconv.Itoa(v)]
	return !exists || v < ki.MinEncryptionVersion || v < ki.MinAvailableVersion
}

// callerClient returns a client that carries token alone: a clone of
// keyd's client (same address, TLS and connection pool), never keyd's own
// client with its token swapped. It shares keyd's client's transport (and
// so its Router: the same address choice); the library itself does not
// retry, and each call times out after SignTimeout.
func (b *Backend) callerClient(token string) (*api.Client, error) {
	k := hashKey("client", token)
	now := b.clock.Now()
	if c, ok := b.clients.get(k, now); ok {
		return c, nil
	}
	c, err := b.client.CloneWithHeaders()
	if err != nil {
		return nil, fmt.Errorf("vault: clone client: %w", err)
	}
	// Clone reads VAULT_TOKEN from the environment: set the caller's token
	// before anything else, so keyd's own token is never used.
	c.SetToken(token)
	c.SetMaxRetries(0)
	c.SetClientTimeout(b.signTimeout)
	b.clients.put(k, c, now.Add(clientTTL), now)
	return c, nil
}

// callerError maps the failure of a call made with a caller's token. Vault
// answers 403 both for an unknown token and for a valid one without the
// right policy: a lookup-self with the same token tells them apart.
func (b *Backend) callerError(ctx context.Context, c *api.Client, op string, err error) error {
	return Explain(b.callerCause(ctx, c, op, err))
}

func (b *Backend) callerCause(ctx context.Context, c *api.Client, op string, err error) error {
	switch status := statusOf(err); {
	case isUnavailable(err):
		return fmt.Errorf("%w: vault %s: %w", signer.ErrUnavailable, op, err)
	case status == 403:
		if _, lerr := c.Auth().Token().LookupSelfWithContext(ctx); lerr != nil {
			if statusOf(lerr) == 403 {
				return fmt.Errorf("%w: vault does not know the token", signer.ErrUnauthenticated)
			}
			return wrap("token lookup", lerr)
		}
		return fmt.Errorf("%w: vault refused to %s with this token", signer.ErrPermissionDenied, op)
	case status == 400 && op == "sign":
		return fmt.Errorf("%w: vault refused to sign: %w", signer.ErrNoKey, err)
	}
	// Anything else (a 404 for a missing key, a 412 from a lagging standby,
	// ...) is Vault not serving the request: unavailable, never a 500.
	return fmt.Errorf("%w: vault %s: %w", signer.ErrUnavailable, op, err)
}
