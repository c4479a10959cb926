package verify

import "errors"

// Sentinel errors. Every error returned by [Verifier.Verify] wraps exactly one
// of them (or a context error), with details added after the sentinel's text.
var (
	// ErrSymmetric: the token's alg is "none" or HMAC (HS256, HS384, HS512).
	// Such a token could be minted by any service holding the secret, so it is
	// refused before any key is looked up.
	ErrSymmetric = errors.New("verify: token is symmetrically signed; only asymmetric tokens are accepted (JWTs signed by the LMS)")
	// ErrAlgorithm: the alg is not on the allow-list, or does not fit the key
	// it names (key type, curve, or the key's own alg).
	ErrAlgorithm = errors.New("verify: token algorithm is not allowed")
	// ErrKeyInHeader: the header carries jku, x5u, jwk or x5c. These are never
	// followed; keys come only from the configured key set.
	ErrKeyInHeader = errors.New("verify: token header names its own key (jku, x5u, jwk or x5c); keys come only from the key set")
	// ErrTooLarge: the token is longer than Config.MaxTokenSize.
	ErrTooLarge = errors.New("verify: token is too large")
	// ErrMalformed: the token is not a compact JWS with a JSON header and a
	// JSON object of claims of the right types.
	ErrMalformed = errors.New("verify: token is malformed")
	// ErrUnknownKey: the token has no kid, or names a key the key set does not hold.
	ErrUnknownKey = errors.New("verify: token is signed by an unknown key")
	// ErrBadSignature: the signature does not match the header and claims.
	ErrBadSignature = errors.New("verify: token signature is invalid")
	// ErrExpired: exp is in the past, beyond the leeway.
	ErrExpired = errors.New("verify: token has expired")
	// ErrNotYetValid: nbf or iat is in the future, beyond the leeway.
	ErrNotYetValid = errors.New("verify: token is not valid yet")
	// ErrLifetime: iat or exp is missing, or exp - iat is above Config.MaxLifetime.
	ErrLifetime = errors.New("verify: token lifetime is missing or too long")
	// ErrIssuer: iss is not one of Config.Issuers.
	ErrIssuer = errors.New("verify: token issuer is not accepted")
	// ErrAudience: aud does not contain Config.Audience.
	ErrAudience = errors.New("verify: token audience is not accepted")
	// ErrGrantType: grant_type is not the one required.
	ErrGrantType = errors.New("verify: token grant type is not accepted")
	// ErrAccountDisabled: the session exchange's account check said the
	// token's user is disabled.
	ErrAccountDisabled = errors.New("verify: account is disabled")
	// ErrKeySetUnavailable: a remote key set has never been fetched successfully.
	ErrKeySetUnavailable = errors.New("verify: key set is unavailable")
	// ErrStaleKeys: a remote key set could not be refreshed for longer than
	// RemoteConfig.MaxStaleness, so its cached keys are no longer trusted
	// (one of them may have been revoked meanwhile).
	ErrStaleKeys = errors.New("verify: cached keys are stale; the key set could not be refreshed within the staleness bound")
)

// reasons maps each sentinel to the short word Reason returns.
var reasons = []struct {
	err    error
	reason string
}{
	{ErrSymmetric, "symmetric"},
	{ErrAlgorithm, "algorithm"},
	{ErrKeyInHeader, "key_in_header"},
	{ErrTooLarge, "too_large"},
	{ErrMalformed, "malformed"},
	{ErrUnknownKey, "unknown_key"},
	{ErrBadSignature, "bad_signature"},
	{ErrExpired, "expired"},
	{ErrNotYetValid, "not_yet_valid"},
	{ErrLifetime, "lifetime"},
	{ErrIssuer, "issuer"},
	{ErrAudience, "audience"},
	{ErrGrantType, "grant_type"},
	{ErrAccountDisabled, "account_disabled"},
	{ErrKeySetUnavailable, "keys_unavailable"},
	{ErrStaleKeys, "stale_keys"},
}

// Reason names the sentinel err wraps in one snake_case word ("symmetric",
// "expired", "not_yet_valid", "lifetime", "audience", "issuer", "grant_type",
// "unknown_key", "bad_signature", "malformed", "stale_keys", "too_large",
// "algorithm", "key_in_header", "account_disabled", "keys_unavailable"). It
// returns "" for nil and "invalid_token" for any other error.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "invalid_token"
}
