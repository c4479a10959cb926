// Package claims turns the body of a sign request into the exact JWT payload
// keyd signs: it decodes the body strictly and applies the token policy.
package claims

import (
	cryptorand "crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openedx-keyd/keyd/internal/strictjson"
)

// Policy is the token policy from configuration.
type Policy struct {
	Issuers     []string      // allowed iss values
	MaxLifetime time.Duration // <= 1h, validated elsewhere
	ClockSkew   time.Duration
}

// Token is what the signer needs once the policy has run.
type Token struct {
	Payload   []byte // keyd's own compact JSON encoding of the final claims
	ExpiresAt time.Time
	IssuedAt  time.Time
	// For the sign log line.
	JTI, Sub, GrantType string
}

// Build decodes a sign request body, {"claims": {...}, "ttl": "15m"} with ttl
// optional, and applies the policy at now. rand supplies the jti of claims
// without one; nil means crypto/rand.
//
// Every refusal is an *Error: 400 when the body is malformed, 422 when the
// claims break the policy. Any other error is keyd's own fault (rand failed).
func (p Policy) Build(body []byte, now time.Time, rand io.Reader) (Token, error) {
	req, err := decodeRequest(body)
	if err != nil {
		return Token{}, err
	}
	c := findClaims(req.claims)
	if err := checkTimeShape(c, req.ttl); err != nil {
		return Token{}, err
	}
	if err := p.checkClaims(c); err != nil {
		return Token{}, err
	}
	iat, exp, err := p.lifetime(c, req.ttl, now)
	if err != nil {
		return Token{}, err
	}
	tok := Token{
		IssuedAt:  time.Unix(iat, 0).UTC(),
		ExpiresAt: time.Unix(exp, 0).UTC(),
		Sub:       c.sub.Text,
		GrantType: c.grantType.Text,
	}
	if c.jti != nil {
		tok.JTI = c.jti.Text
	}

	own := append(make([]strictjson.Member, 0, 3), // keyd's own claims, sorted by name
		strictjson.Member{Name: "exp", Value: strictjson.NumberValue(strconv.FormatInt(exp, 10))},
		strictjson.Member{Name: "iat", Value: strictjson.NumberValue(strconv.FormatInt(iat, 10))})
	if tok.JTI == "" {
		if tok.JTI, err = newJTI(rand); err != nil {
			return Token{}, err
		}
		own = append(own, strictjson.Member{Name: "jti", Value: strictjson.StringValue(tok.JTI)})
	}
	tok.Payload = strictjson.AppendMerged(make([]byte, 0, len(body)+96), req.claims, own)
	return tok, nil
}

// request is a decoded sign request body.
type request struct {
	claims []strictjson.Member // sorted by name
	ttl    time.Duration       // 0 when absent
}

func decodeRequest(body []byte) (request, error) {
	b, err := DecodeBody(body, "claims", "ttl")
	if err != nil {
		return request{}, err
	}
	var req request
	claims := b.get("claims")
	if claims == nil {
		return request{}, malformed(CodeInvalidRequest, `The request body must have a "claims" object.`)
	}
	if claims.Kind != strictjson.Object {
		return request{}, malformed(CodeInvalidRequest, `Member "claims" must be a JSON object.`)
	}
	req.claims = claims.Members
	if ttl := b.get("ttl"); ttl != nil {
		if req.ttl, err = parseTTL(ttl); err != nil {
			return request{}, err
		}
	}
	return req, nil
}

func jsonError(err error) *Error {
	if d, ok := err.(*strictjson.DuplicateError); ok {
		where := "the request body"
		if w := d.Where(); w != "" {
			where = quote(w)
		}
		return malformed(CodeDuplicateMember, "Member %s appears more than once in %s.", quote(d.Name), where)
	}
	return malformed(CodeInvalidJSON, "The request body is not valid JSON: %v.", err)
}

func parseTTL(v *strictjson.Value) (time.Duration, error) {
	if v.Kind != strictjson.String {
		return 0, malformed(CodeInvalidTTL, `Member "ttl" must be a duration string such as "15m".`)
	}
	d, err := time.ParseDuration(v.Text)
	if err != nil {
		return 0, malformed(CodeInvalidTTL, `Member "ttl" must be a duration string such as "15m".`)
	}
	if d <= 0 {
		return 0, malformed(CodeInvalidTTL, `Member "ttl" must be a positive duration.`)
	}
	return d, nil
}

// knownClaims points at the claims the policy reads; nil means absent.
type knownClaims struct {
	iss, aud, sub, grantType, iat, exp, nbf, jti *strictjson.Value
}

func findClaims(members []strictjson.Member) knownClaims {
	var c knownClaims
	for i := range members {
		v := &members[i].Value
		switch members[i].Name {
		case "iss":
			c.iss = v
		case "aud":
			c.aud = v
		case "sub":
			c.sub = v
		case "grant_type":
			c.grantType = v
		case "iat":
			c.iat = v
		case "exp":
			c.exp = v
		case "nbf":
			c.nbf = v
		case "jti":
			c.jti = v
		}
	}
	return c
}

// checkTimeShape refuses, as malformed, iat and exp that do not come together,
// that come with a ttl, or that are not numbers.
func checkTimeShape(c knownClaims, ttl time.Duration) error {
	switch {
	case c.iat == nil && c.exp == nil:
		return nil
	case c.iat == nil || c.exp == nil:
		return malformed(CodeInvalidTimes, `Claims "iat" and "exp" must be given together or not at all.`)
	case ttl != 0:
		return malformed(CodeInvalidTimes, `Member "ttl" must be absent when claims "iat" and "exp" are given.`)
	case c.iat.Kind != strictjson.Number:
		return malformed(CodeInvalidTimes, `Claim "iat" must be a number.`)
	case c.exp.Kind != strictjson.Number:
		return malformed(CodeInvalidTimes, `Claim "exp" must be a number.`)
	}
	return nil
}

// checkClaims applies the policy to every claim but the times.
func (p Policy) checkClaims(c knownClaims) error {
	switch {
	case c.iss == nil:
		return refused(CodeInvalidClaim, `Claim "iss" is required.`)
	case c.iss.Kind != strictjson.String:
		return refused(CodeInvalidClaim, `Claim "iss" must be a string.`)
	case !slices.Contains(p.Issuers, c.iss.Text):
		return refused(CodeIssuerNotAllowed, "Claim \"iss\" %q is not an issuer keyd signs for; accepted: %s.",
			c.iss.Text, strings.Join(p.Issuers, ", "))
	case c.aud == nil:
		return refused(CodeInvalidClaim, `Claim "aud" is required.`)
	case !validAudience(c.aud):
		return refused(CodeInvalidClaim,
			`Claim "aud" must be a non-empty string or a non-empty array of non-empty strings.`)
	}
	for _, r := range []struct {
		name     string
		v        *strictjson.Value
		optional bool
	}{{"sub", c.sub, false}, {"jti", c.jti, true}} {
		switch {
		case r.v == nil && r.optional:
		case r.v == nil:
			return refused(CodeInvalidClaim, "Claim %q is required.", r.name)
		case !r.v.IsNonEmptyString():
			return refused(CodeInvalidClaim, "Claim %q must be a non-empty string.", r.name)
		}
	}
	// grant_type is required and a string, but may be empty: the LMS writes
	// "" for tokens not issued through an OAuth grant (create_jwt_for_user),
	// and the session exchange, not keyd, accepts only "password".
	switch {
	case c.grantType == nil:
		return refused(CodeInvalidClaim, `Claim "grant_type" is required.`)
	case c.grantType.Kind != strictjson.String:
		return refused(CodeInvalidClaim, `Claim "grant_type" must be a string (it may be empty).`)
	}
	if c.nbf != nil && c.nbf.Kind != strictjson.Number {
		return refused(CodeInvalidClaim, `Claim "nbf" must be a number.`)
	}
	return nil
}

func validAudience(v *strictjson.Value) bool {
	if v.Kind == strictjson.String {
		return v.Text != ""
	}
	if v.Kind != strictjson.Array || len(v.Elems) == 0 {
		return false
	}
	for i := range v.Elems {
		if !v.Elems[i].IsNonEmptyString() {
			return false
		}
	}
	return true
}

// lifetime returns the iat and exp of the token in Unix seconds: the caller's,
// once checked, or now and now plus the ttl (the maximum lifetime by default).
func (p Policy) lifetime(c knownClaims, ttl time.Duration, now time.Time) (iat, exp int64, err error) {
	maxSeconds := int64(p.MaxLifetime / time.Second)
	if c.iat == nil {
		if ttl > p.MaxLifetime {
			return 0, 0, refused(CodeLifetimeTooLong,
				"The ttl %v is longer than the maximum token lifetime of %v.", ttl, p.MaxLifetime)
		}
		if ttl == 0 {
			ttl = p.MaxLifetime
		}
		// NumericDates are whole seconds; a ttl below one second still gets one.
		iat = now.Unix()
		exp = iat + max(int64(ttl/time.Second), 1)
		if exp-iat > maxSeconds {
			return 0, 0, refused(CodeLifetimeTooLong,
				"The maximum token lifetime of %v is shorter than one second.", p.MaxLifetime)
		}
		return iat, exp, nil
	}

	iat, ok := numericDate(c.iat.Text)
	if !ok {
		return 0, 0, refused(CodeInvalidClaim, `Claim "iat" must be a whole number of seconds.`)
	}
	exp, ok = numericDate(c.exp.Text)
	if !ok {
		return 0, 0, refused(CodeInvalidClaim, `Claim "exp" must be a whole number of seconds.`)
	}
	// now is not a whole second: for an integer t, t > now exactly when t >
	// now.Unix(), and t <= now+skew exactly when t <= (now+skew).Unix().
	switch {
	case exp <= iat:
		return 0, 0, refused(CodeInvalidClaim, `Claim "exp" must be later than claim "iat".`)
	case exp-iat > maxSeconds:
		return 0, 0, refused(CodeLifetimeTooLong,
			"The token lifetime (exp - iat) of %ds is longer than the maximum of %ds.", exp-iat, maxSeconds)
	case exp <= now.Unix():
		return 0, 0, refused(CodeTokenExpired, `Claim "exp" must be in the future.`)
	case iat > now.Add(p.ClockSkew).Unix():
		return 0, 0, refused(CodeIssuedInTheFuture, `Claim "iat" must not be in the future.`)
	}
	return iat, exp, nil
}

// maxNumericDate bounds the iat and exp keyd accepts, far beyond any real
// date, so that differences of them cannot overflow.
const maxNumericDate = 1<<53 - 1

// numericDate returns the value of a JSON number literal that is a whole
// number within ±maxNumericDate: 1700000000, 1.7e9 and 1700000000.0 are all
// the same second, 1.5 is not a whole number.
func numericDate(lit string) (int64, bool) {
	if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
		if n < -maxNumericDate || n > maxNumericDate {
			return 0, false
		}
		return n, true
	}
	neg := strings.HasPrefix(lit, "-")
	lit = strings.TrimPrefix(lit, "-")
	mantissa, exponent := lit, int64(0)
	if i := strings.IndexAny(lit, "eE"); i >= 0 {
		mantissa = lit[:i]
		e, err := strconv.ParseInt(lit[i+1:], 10, 32)
		if err != nil {
			return 0, false
		}
		exponent = e
	}
	whole, frac, _ := strings.Cut(mantissa, ".")
	// The value is 0.digits × 10^point once the leading zeros are gone.
	digits := whole + frac
	point := int64(len(whole)) + exponent
	trimmed := strings.TrimLeft(digits, "0")
	point -= int64(len(digits) - len(trimmed))
	digits = strings.TrimRight(trimmed, "0")
	switch {
	case digits == "":
		return 0, true
	case point < int64(len(digits)):
		return 0, false // a non-zero digit after the decimal point
	case point > 16:
		return 0, false // at least 10^16, beyond maxNumericDate
	}
	n, err := strconv.ParseInt(digits+strings.Repeat("0", int(point)-len(digits)), 10, 64)
	if err != nil || n > maxNumericDate {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// newJTI returns 128 random bits as unpadded base64url.
func newJTI(rand io.Reader) (string, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("claims: read randomness for jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
