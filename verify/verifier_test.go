package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestVerifyAttacks runs every attack of the table against each key type.
func TestVerifyAttacks(t *testing.T) {
	for _, alg := range []string{"RS512", "RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			key := newKey(t, alg, "lms")
			attacker := newKey(t, alg, "attacker")
			clock := newClock()
			v := newTestVerifier(t, staticSet(t, key), clock.Now)
			now := clock.Now()

			with := func(edit func(c map[string]any)) map[string]any {
				c := claimsAt(now)
				edit(c)
				return c
			}
			valid := sign(t, key, claimsAt(now), nil, false)
			head, _, _ := strings.Cut(valid, ".")
			sig := valid[strings.LastIndex(valid, ".")+1:]

			tests := []struct {
				name  string
				token string
				want  error // nil: accepted
			}{
				{"valid control", valid, nil},
				{"alg none", unsigned(t, map[string]any{"alg": "none", "kid": key.kid, "typ": "JWT"}, claimsAt(now)), ErrSymmetric},
				{"alg None", unsigned(t, map[string]any{"alg": "None", "kid": key.kid}, claimsAt(now)), ErrSymmetric},
				{"HS256 with the public key PEM as secret", signHMAC(t, "HS256", key.kid, key.publicPEM(t), claimsAt(now)), ErrSymmetric},
				{"HS512 with the public key PEM as secret", signHMAC(t, "HS512", key.kid, key.publicPEM(t), claimsAt(now)), ErrSymmetric},
				{"kid not published", sign(t, attacker, claimsAt(now), nil, false), ErrUnknownKey},
				{"no kid", unsigned(t, map[string]any{"alg": alg}, claimsAt(now)) + "c2ln", ErrUnknownKey},
				{"jku pointing elsewhere", sign(t, attacker, claimsAt(now), map[string]any{"jku": "https://evil.example.com/jwks.json"}, false), ErrKeyInHeader},
				{"x5u pointing elsewhere", sign(t, attacker, claimsAt(now), map[string]any{"x5u": "https://evil.example.com/cert.pem"}, false), ErrKeyInHeader},
				{"key embedded in header", sign(t, attacker, claimsAt(now), nil, true), ErrKeyInHeader},
				{"tampered payload", head + "." + seg(t, with(func(c map[string]any) { c["sub"] = "admin" })) + "." + sig, ErrBadSignature},
				{"signature of another key", head + "." + strings.Split(valid, ".")[1] + "." + strings.Split(sign(t, attacker, claimsAt(now), nil, false), ".")[2], ErrBadSignature},
				{"expired", sign(t, key, with(func(c map[string]any) {
					c["iat"], c["exp"] = now.Add(-time.Hour).Unix(), now.Add(-2*time.Minute).Unix()
				}), nil, false), ErrExpired},
				{"expired within leeway", sign(t, key, with(func(c map[string]any) {
					c["iat"], c["exp"] = now.Add(-time.Hour).Unix(), now.Add(-30*time.Second).Unix()
				}), nil, false), nil},
				{"not yet valid", sign(t, key, with(func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), nil, false), ErrNotYetValid},
				{"issued in the future", sign(t, key, with(func(c map[string]any) {
					c["iat"], c["exp"] = now.Add(10*time.Minute).Unix(), now.Add(20*time.Minute).Unix()
				}), nil, false), ErrNotYetValid},
				{"lifetime 2h", sign(t, key, with(func(c map[string]any) { c["exp"] = now.Add(2 * time.Hour).Unix() }), nil, false), ErrLifetime},
				{"no iat", sign(t, key, with(func(c map[string]any) { delete(c, "iat") }), nil, false), ErrLifetime},
				{"no exp", sign(t, key, with(func(c map[string]any) { delete(c, "exp") }), nil, false), ErrLifetime},
				{"wrong issuer", sign(t, key, with(func(c map[string]any) { c["iss"] = "https://evil.example.com" }), nil, false), ErrIssuer},
				{"wrong audience", sign(t, key, with(func(c map[string]any) { c["aud"] = "ecommerce" }), nil, false), ErrAudience},
				{"audience in a list", sign(t, key, with(func(c map[string]any) { c["aud"] = []string{"x", testAudience} }), nil, false), nil},
				{"oversized", sign(t, key, with(func(c map[string]any) { c["pad"] = strings.Repeat("a", 20<<10) }), nil, false), ErrTooLarge},
				{"bad base64", "!!!." + strings.Split(valid, ".")[1] + "." + sig, ErrMalformed},
				{"bad base64 signature", head + "." + strings.Split(valid, ".")[1] + ".%%%", ErrMalformed},
				{"two segments", head + "." + strings.Split(valid, ".")[1], ErrMalformed},
				{"five segments (JWE)", "a.b.c.d.e", ErrMalformed},
				{"header JSON garbage", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":`)) + ".e30.c2ln", ErrMalformed},
				{"claims JSON garbage", head + "." + base64.RawURLEncoding.EncodeToString([]byte("not json")) + "." + sig, ErrBadSignature},
				{"empty", "", ErrMalformed},
				{"alg not allowed", unsigned(t, map[string]any{"alg": "ES256K", "kid": key.kid}, claimsAt(now)) + "c2ln", ErrAlgorithm},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					claims, err := v.Verify(context.Background(), tt.token)
					if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
						t.Fatalf("Verify: got error %v, want %v", err, tt.want)
					}
					if tt.want == nil && (claims.Subject != "anon-1234" || claims.GrantType != "password" || claims.Raw["jti"] != "jti-1") {
						t.Errorf("claims = %+v", claims)
					}
					if err != nil && !strings.HasPrefix(err.Error(), "verify: ") {
						t.Errorf("error %q lacks the package prefix", err)
					}
				})
			}
		})
	}
}

// TestVerifySymmetricMessage pins the wording operators and IDAs see.
func TestVerifySymmetricMessage(t *testing.T) {
	key := newKey(t, "RS512", "lms")
	v := newTestVerifier(t, staticSet(t, key), newClock().Now)
	_, err := v.Verify(context.Background(), signHMAC(t, "HS256", key.kid, key.publicPEM(t), claimsAt(epoch)))
	for _, want := range []string{"symmetrically signed", "only asymmetric tokens are accepted", "HS256"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	if got := Reason(err); got != "symmetric" {
		t.Errorf("Reason = %q, want symmetric", got)
	}
}

// TestVerifySymmetricBeforeKeyLookup: an HS256 token never reaches the key set.
func TestVerifySymmetricBeforeKeyLookup(t *testing.T) {
	keys := &countingKeySet{}
	v := newTestVerifier(t, keys, newClock().Now)
	for _, tok := range []string{
		signHMAC(t, "HS256", "k", []byte("0123456789abcdef0123456789abcdef"), claimsAt(epoch)),
		unsigned(t, map[string]any{"alg": "none", "kid": "k"}, claimsAt(epoch)),
	} {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrSymmetric) {
			t.Errorf("got %v, want ErrSymmetric", err)
		}
	}
	if keys.calls != 0 {
		t.Errorf("key set called %d times, want 0", keys.calls)
	}
}

type countingKeySet struct {
	StaticKeySet
	calls int
}

func (c *countingKeySet) Key(ctx context.Context, kid string) (jwk, error) {
	c.calls++
	return c.StaticKeySet.Key(ctx, kid)
}

// TestVerifyKeyAlgorithm: the key's own alg must match the header, and the
// key type must fit; a key without alg accepts the algs of its type.
func TestVerifyKeyAlgorithm(t *testing.T) {
	clock := newClock()
	rs := newKey(t, "RS512", "lms")
	es := newKey(t, "ES256", "lms")

	// RS256 token under a kid published for RS512.
	rs256 := &testKey{alg: "RS256", kid: rs.kid, priv: rs.priv}
	v := newTestVerifier(t, staticSet(t, rs), clock.Now)
	if _, err := v.Verify(context.Background(), sign(t, rs256, claimsAt(epoch), nil, false)); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("RS256 token, RS512 key: got %v, want ErrAlgorithm", err)
	}
	// ES256 header naming an RSA kid.
	forged := &testKey{alg: "ES256", kid: rs.kid, priv: es.priv}
	if _, err := v.Verify(context.Background(), sign(t, forged, claimsAt(epoch), nil, false)); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("ES256 token, RSA key: got %v, want ErrAlgorithm", err)
	}

	// A key without alg, as in many JWT_PUBLIC_SIGNING_JWK_SET settings.
	noAlg, err := NewStaticKeySet([]byte(`{"keys":[` + strings.Replace(string(mustJSON(t, rs.public())), `"alg":"RS512",`, "", 1) + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	v = newTestVerifier(t, noAlg, clock.Now)
	for _, alg := range []string{"RS256", "RS512", "PS256"} {
		k := &testKey{alg: alg, kid: rs.kid, priv: rs.priv}
		if _, err := v.Verify(context.Background(), sign(t, k, claimsAt(epoch), nil, false)); err != nil {
			t.Errorf("%s token, key without alg: %v", alg, err)
		}
	}
}

func TestVerifyConfig(t *testing.T) {
	keys := staticSet(t, newKey(t, "ES256", "lms"))
	_, err := NewVerifier(keys, Config{MaxLifetime: 2 * time.Hour, MaxTokenSize: -1})
	for _, want := range []string{"Issuers", "Audience", "MaxLifetime", "MaxTokenSize"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config error %v does not name %s", err, want)
		}
	}
	if _, err := NewVerifier(nil, Config{SkipIssuerCheck: true, SkipAudienceCheck: true}); err == nil {
		t.Error("nil key set accepted")
	}
}

func TestVerifyLeeway(t *testing.T) {
	key := newKey(t, "ES256", "lms")
	clock := newClock()
	expired30s := sign(t, key, map[string]any{
		"iss": testIssuer, "aud": testAudience, "iat": epoch.Add(-time.Hour).Unix(), "exp": epoch.Add(-30 * time.Second).Unix(),
	}, nil, false)
	for _, tt := range []struct {
		leeway time.Duration
		want   error
	}{{0, nil}, {2 * time.Minute, nil}, {10 * time.Second, ErrExpired}, {-1, ErrExpired}} {
		v, err := NewVerifier(staticSet(t, key), Config{Issuers: []string{testIssuer}, Audience: testAudience, Leeway: tt.leeway, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), expired30s); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("leeway %s: got %v, want %v", tt.leeway, err, tt.want)
		}
	}
}

func TestVerifyGrantTypeOption(t *testing.T) {
	key := newKey(t, "ES256", "lms")
	clock := newClock()
	v, err := NewVerifier(staticSet(t, key), Config{Issuers: []string{testIssuer}, Audience: testAudience, GrantType: "client_credentials", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), sign(t, key, claimsAt(epoch), nil, false))
	if !errors.Is(err, ErrGrantType) || Reason(err) != "grant_type" {
		t.Errorf("got %v (%s), want ErrGrantType", err, Reason(err))
	}
}

func TestVerifyReason(t *testing.T) {
	for _, r := range reasons {
		wrapped := errors.Join(errors.New("context"), r.err)
		if got := Reason(wrapped); got != r.reason {
			t.Errorf("Reason(%v) = %q, want %q", r.err, got, r.reason)
		}
	}
	if Reason(nil) != "" || Reason(errors.New("x")) != "invalid_token" {
		t.Error("Reason of nil or a foreign error")
	}
}

// keyFunc is a KeySet answering every kid with the key it returns.
type keyFunc func() jwk

func (f keyFunc) Key(context.Context, string) (jwk, error) { return f(), nil }

// TestVerifyMalformedKeyFromKeySet: a KeySet of the caller's that returns a
// key no signature can be checked with (an Ed25519 key of the wrong length,
// an RSA key without modulus, an EC key without curve or coordinates) gets
// ErrAlgorithm, never a panic.
func TestVerifyMalformedKeyFromKeySet(t *testing.T) {
	clock := newClock()
	for _, tc := range []struct {
		alg string
		key any
	}{
		{"EdDSA", ed25519.PublicKey(make([]byte, 7))},
		{"RS256", &rsa.PublicKey{E: 65537}},
		{"ES256", &ecdsa.PublicKey{Curve: elliptic.P256()}},
		{"ES256", &ecdsa.PublicKey{}},
	} {
		k := newKey(t, tc.alg, "bad")
		v := newTestVerifier(t, keyFunc(func() jwk { return jwk{Key: tc.key, KeyID: k.kid} }), clock.Now)
		if _, err := v.Verify(context.Background(), sign(t, k, claimsAt(epoch), nil, false)); !errors.Is(err, ErrAlgorithm) {
			t.Errorf("%s token, malformed key: got %v, want ErrAlgorithm", tc.alg, err)
		}
	}
}
