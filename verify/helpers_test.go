package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// epoch is the fake "now" most tests start from.
var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	testIssuer   = "https://lms.example.com/oauth2"
	testAudience = "openedx"
)

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testKey is a private key with the kid and alg it is published under.
type testKey struct {
	alg  string
	kid  string
	priv crypto.Signer
}

func (k *testKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

// publicPEM is the PKIX PEM of the public key: the HMAC secret of an
// algorithm-confusion attack.
func (k *testKey) publicPEM(t testing.TB) []byte {
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

var (
	keyCacheMu sync.Mutex
	keyCache   = map[string]*testKey{}
)

// newKey returns a key for alg; keys are cached per name because RSA
// generation is slow under -race.
func newKey(t testing.TB, alg, name string) *testKey {
	keyCacheMu.Lock()
	defer keyCacheMu.Unlock()
	if k, ok := keyCache[alg+"/"+name]; ok {
		return k
	}
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no key type for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	k := &testKey{alg: alg, kid: fmt.Sprintf("%s-%s", alg, name), priv: priv}
	keyCache[alg+"/"+name] = k
	return k
}

// jwksOf is the JWKS document publishing keys.
func jwksOf(t testing.TB, keys ...*testKey) []byte {
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, k.public())
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// claimsAt are valid claims for a token issued at now, for 15 minutes.
func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"iss":                testIssuer,
		"aud":                testAudience,
		"sub":                "anon-1234",
		"preferred_username": "edx",
		"grant_type":         "password",
		"iat":                now.Unix(),
		"exp":                now.Add(15 * time.Minute).Unix(),
		"jti":                "jti-1",
	}
}

// sign makes a token with go-jose, independent of the code under test.
// extra adds header members (jku, ...); embed puts the public key in "jwk".
func sign(t testing.TB, k *testKey, claims map[string]any, extra map[string]any, embed bool) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: embed}).WithType("JWT").WithHeader("kid", k.kid)
	for name, v := range extra {
		opts = opts.WithHeader(jose.HeaderKey(name), v)
	}
	var key any = k.priv
	if embed {
		key = jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: k.alg}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return signWith(t, signer, claims)
}

// signHMAC signs with an HMAC secret, as an attacker would.
func signHMAC(t testing.TB, alg, kid string, secret []byte, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: secret}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return signWith(t, signer, claims)
}

func signWith(t testing.TB, signer jose.Signer, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// unsigned builds header.payload. with any header: alg "none" and friends.
func unsigned(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	return seg(t, header) + "." + seg(t, claims) + "."
}

func seg(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// newTestVerifier verifies against keys with the test issuer and audience.
func newTestVerifier(t testing.TB, keys KeySet, clock func() time.Time) *Verifier {
	t.Helper()
	v, err := NewVerifier(keys, Config{Issuers: []string{"https://other.example.com", testIssuer}, Audience: testAudience, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func staticSet(t testing.TB, keys ...*testKey) *StaticKeySet {
	t.Helper()
	s, err := NewStaticKeySet(jwksOf(t, keys...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type jwk = jose.JSONWebKey

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
