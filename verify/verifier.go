package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Defaults applied by NewVerifier to zero Config fields.
const (
	DefaultLeeway       = time.Minute
	DefaultMaxLifetime  = time.Hour
	DefaultMaxTokenSize = 16 << 10
)

// Config says which tokens a Verifier accepts. Zero durations and sizes take
// the defaults above.
type Config struct {
	// Issuers lists the accepted iss values. Required unless SkipIssuerCheck.
	Issuers []string
	// Audience must be one of the token's aud values. Required unless
	// SkipAudienceCheck.
	Audience string
	// GrantType, when set, must equal the token's grant_type.
	GrantType string

	SkipIssuerCheck   bool
	SkipAudienceCheck bool

	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means
	// DefaultLeeway; a negative value means none.
	Leeway time.Duration
	// MaxLifetime is the longest exp - iat accepted, at most one hour (the
	// Open edX policy for JWT access tokens). Tokens without iat or exp are
	// refused.
	MaxLifetime time.Duration
	// MaxTokenSize bounds the token's length in bytes.
	MaxTokenSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate reports every bad value in the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Issuers) == 0 && !c.SkipIssuerCheck {
		errs = append(errs, errors.New("verify: config: no Issuers (set SkipIssuerCheck to accept any issuer)"))
	}
	if slices.Contains(c.Issuers, "") {
		errs = append(errs, errors.New("verify: config: Issuers holds an empty issuer"))
	}
	if c.Audience == "" && !c.SkipAudienceCheck {
		errs = append(errs, errors.New("verify: config: no Audience (set SkipAudienceCheck to accept any audience)"))
	}
	if c.MaxLifetime < 0 || c.MaxLifetime > time.Hour {
		errs = append(errs, fmt.Errorf("verify: config: MaxLifetime %s is not between 0 and 1h", c.MaxLifetime))
	}
	if c.MaxTokenSize < 0 {
		errs = append(errs, fmt.Errorf("verify: config: MaxTokenSize %d is negative", c.MaxTokenSize))
	}
	return errors.Join(errs...)
}

// Verifier checks tokens against a key set and a Config. It is safe for
// concurrent use.
type Verifier struct {
	keys KeySet
	cfg  Config
}

// NewVerifier returns a Verifier that takes keys from keys.
func NewVerifier(keys KeySet, cfg Config) (*Verifier, error) {
	if keys == nil {
		return nil, errors.New("verify: nil key set")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Issuers = slices.Clone(cfg.Issuers)
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = DefaultLeeway
	case cfg.Leeway < 0:
		cfg.Leeway = 0
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.MaxTokenSize == 0 {
		cfg.MaxTokenSize = DefaultMaxTokenSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{keys: keys, cfg: cfg}, nil
}

// Verify checks a compact JWS token and returns its claims. The checks run
// cheapest first: size, shape and header (alg "none" and HS* are refused here
// with ErrSymmetric, before any key lookup), then the key named by kid, the
// signature, and finally the claims. Every error wraps one of the package's
// sentinels, or is a context error from the key set.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	tok, err := parse(token, v.cfg.MaxTokenSize)
	if err != nil {
		return nil, err
	}
	key, err := v.keys.Key(ctx, tok.kid)
	if err != nil {
		return nil, err
	}
	if err := tok.alg.fits(&key); err != nil {
		return nil, err
	}
	payload, err := tok.alg.verify(key.Key, token)
	if err != nil {
		return nil, fmt.Errorf("%w: kid %q, alg %s", ErrBadSignature, tok.kid, tok.alg.name)
	}
	claims, err := parseClaims(payload)
	if err != nil {
		return nil, err
	}
	if err := v.check(claims, v.cfg.Now()); err != nil {
		return nil, err
	}
	return claims, nil
}

// check applies the time, issuer, audience and grant type rules.
func (v *Verifier) check(c *Claims, now time.Time) error {
	leeway := v.cfg.Leeway
	switch {
	case c.IssuedAt.IsZero():
		return fmt.Errorf("%w: no iat claim", ErrLifetime)
	case c.Expiry.IsZero():
		return fmt.Errorf("%w: no exp claim", ErrLifetime)
	case !now.Before(c.Expiry.Add(leeway)):
		return fmt.Errorf("%w: exp %s, now %s", ErrExpired, stamp(c.Expiry), stamp(now))
	case !c.NotBefore.IsZero() && now.Add(leeway).Before(c.NotBefore):
		return fmt.Errorf("%w: nbf %s, now %s", ErrNotYetValid, stamp(c.NotBefore), stamp(now))
	case now.Add(leeway).Before(c.IssuedAt):
		return fmt.Errorf("%w: iat %s is in the future, now %s", ErrNotYetValid, stamp(c.IssuedAt), stamp(now))
	}
	if life := c.Expiry.Sub(c.IssuedAt); life <= 0 || life > v.cfg.MaxLifetime {
		return fmt.Errorf("%w: exp - iat is %s, at most %s allowed", ErrLifetime, life, v.cfg.MaxLifetime)
	}
	if !v.cfg.SkipIssuerCheck && !slices.Contains(v.cfg.Issuers, c.Issuer) {
		return fmt.Errorf("%w: iss %q", ErrIssuer, c.Issuer)
	}
	if !v.cfg.SkipAudienceCheck && !slices.Contains(c.Audience, v.cfg.Audience) {
		return fmt.Errorf("%w: aud %q does not include %q", ErrAudience, c.Audience, v.cfg.Audience)
	}
	if v.cfg.GrantType != "" && c.GrantType != v.cfg.GrantType {
		return fmt.Errorf("%w: grant_type %q, want %q", ErrGrantType, c.GrantType, v.cfg.GrantType)
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// token is what the cheap checks read from a compact JWS; nothing in it is
// authenticated yet.
type token struct {
	alg *algorithm
	kid string
}

// header is the part of a JOSE header the verifier reads. The key-carrying
// members are kept raw only to detect them.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
	Enc  json.RawMessage `json:"enc"`
	Jku  json.RawMessage `json:"jku"`
	X5u  json.RawMessage `json:"x5u"`
	Jwk  json.RawMessage `json:"jwk"`
	X5c  json.RawMessage `json:"x5c"`
}

var b64 = base64.RawURLEncoding.Strict()

// parse runs every check that needs no key and no crypto: size, three
// segments, header JSON, the algorithm allow-list, forbidden header members,
// and base64 of payload and signature.
func parse(s string, maxSize int) (*token, error) {
	head, body, sig, err := split(s, maxSize)
	if err != nil {
		return nil, err
	}
	h, err := decodeHeader(head)
	if err != nil {
		return nil, err
	}
	alg, err := checkHeader(h)
	if err != nil {
		return nil, err
	}
	if _, err := b64.DecodeString(body); err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	if signature, err := b64.DecodeString(sig); err != nil || len(signature) == 0 {
		return nil, fmt.Errorf("%w: signature is not base64url", ErrMalformed)
	}
	return &token{alg: alg, kid: h.Kid}, nil
}

// split bounds the size of a compact JWS and cuts it into its three
// segments; five segments are a JWE, refused as such.
func split(s string, maxSize int) (head, body, sig string, err error) {
	if len(s) > maxSize {
		return "", "", "", fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(s), maxSize)
	}
	if n := strings.Count(s, "."); n != 2 {
		if n == 4 {
			return "", "", "", fmt.Errorf("%w: encrypted tokens (JWE) are not accepted", ErrMalformed)
		}
		return "", "", "", fmt.Errorf("%w: want 3 dot-separated segments, got %d", ErrMalformed, n+1)
	}
	head, rest, _ := strings.Cut(s, ".")
	body, sig, _ = strings.Cut(rest, ".")
	return head, body, sig, nil
}

// decodeHeader decodes the base64url JSON header segment.
func decodeHeader(head string) (*header, error) {
	headerJSON, err := b64.DecodeString(head)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var h header
	if err := json.Unmarshal(headerJSON, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	return &h, nil
}

// checkHeader applies the algorithm allow-list and refuses the header
// members keyd never accepts (keys or key URLs, enc, crit), in that order,
// and requires a kid.
func checkHeader(h *header) (*algorithm, error) {
	if h.Alg == "" {
		return nil, fmt.Errorf("%w: header has no alg", ErrMalformed)
	}
	if isSymmetric(h.Alg) {
		return nil, fmt.Errorf("%w: alg %q", ErrSymmetric, h.Alg)
	}
	if len(h.Jku) > 0 || len(h.X5u) > 0 || len(h.Jwk) > 0 || len(h.X5c) > 0 {
		return nil, ErrKeyInHeader
	}
	if len(h.Enc) > 0 {
		return nil, fmt.Errorf("%w: encrypted tokens (JWE) are not accepted", ErrMalformed)
	}
	if len(h.Crit) > 0 {
		return nil, fmt.Errorf("%w: header has crit extensions, none are supported", ErrMalformed)
	}
	alg, ok := algorithms[h.Alg]
	if !ok {
		return nil, fmt.Errorf("%w: alg %q", ErrAlgorithm, h.Alg)
	}
	if h.Kid == "" {
		return nil, fmt.Errorf("%w: header has no kid", ErrUnknownKey)
	}
	return alg, nil
}
