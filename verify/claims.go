package verify

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Claims are a verified token's claims: the registered ones typed, Open
// edX's grant_type, and every claim as decoded JSON in Raw.
type Claims struct {
	Issuer    string    // iss
	Subject   string    // sub
	Audience  []string  // aud, a string or a list in the token
	Expiry    time.Time // exp
	NotBefore time.Time // nbf; zero when absent
	IssuedAt  time.Time // iat
	ID        string    // jti
	GrantType string    // grant_type, e.g. "password"

	// Raw holds every claim, registered or not, as encoding/json decodes it
	// into an any (numbers are float64).
	Raw map[string]any
}

// Username is the Open edX username: the preferred_username claim when it is
// a non-empty string, the subject otherwise.
func (c *Claims) Username() string {
	if name, ok := c.Raw["preferred_username"].(string); ok && name != "" {
		return name
	}
	return c.Subject
}

// MarshalJSON encodes the claims as they were in the token (from Raw).
func (c *Claims) MarshalJSON() ([]byte, error) {
	return json.Marshal(c.Raw)
}

// parseClaims decodes a token's payload. Registered claims of the wrong JSON
// type make the token malformed.
func parseClaims(payload []byte) (*Claims, error) {
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object", ErrMalformed)
	}
	c := &Claims{Raw: raw}
	var err error
	for _, s := range []struct {
		name string
		dst  *string
	}{{"iss", &c.Issuer}, {"sub", &c.Subject}, {"jti", &c.ID}, {"grant_type", &c.GrantType}} {
		if *s.dst, err = stringClaim(raw, s.name); err != nil {
			return nil, err
		}
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"exp", &c.Expiry}, {"nbf", &c.NotBefore}, {"iat", &c.IssuedAt}} {
		if *t.dst, err = timeClaim(raw, t.name); err != nil {
			return nil, err
		}
	}
	if c.Audience, err = audienceClaim(raw); err != nil {
		return nil, err
	}
	return c, nil
}

func stringClaim(raw map[string]any, name string) (string, error) {
	v, ok := raw[name]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: claim %s is not a string", ErrMalformed, name)
	}
	return s, nil
}

// maxNumericDate bounds exp, nbf and iat (year 5138) so conversions cannot overflow.
const maxNumericDate = 1e11

// timeClaim reads a NumericDate: seconds since the epoch, possibly fractional.
func timeClaim(raw map[string]any, name string) (time.Time, error) {
	v, ok := raw[name]
	if !ok {
		return time.Time{}, nil
	}
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, fmt.Errorf("%w: claim %s is not a date in seconds since 1970", ErrMalformed, name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// audienceClaim reads aud, a string or a list of strings.
func audienceClaim(raw map[string]any) ([]string, error) {
	v, ok := raw["aud"]
	if !ok {
		return nil, nil
	}
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case []any:
		auds := make([]string, 0, len(v))
		for _, a := range v {
			s, ok := a.(string)
			if !ok {
				return nil, fmt.Errorf("%w: claim aud is not a string or a list of strings", ErrMalformed)
			}
			auds = append(auds, s)
		}
		return auds, nil
	}
	return nil, fmt.Errorf("%w: claim aud is not a string or a list of strings", ErrMalformed)
}
