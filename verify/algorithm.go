package verify

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// family is how an algorithm signs.
type family int

const (
	rsaPKCS1 family = iota
	rsaPSS
	ecdsaSig
	ed25519Sig
)

// algorithm is one entry of the allow-list.
type algorithm struct {
	name   string
	family family
	curve  elliptic.Curve // ECDSA only
}

// algorithms is the allow-list: asymmetric JWS algorithms only.
var algorithms = map[string]*algorithm{
	"RS256": {name: "RS256", family: rsaPKCS1},
	"RS384": {name: "RS384", family: rsaPKCS1},
	"RS512": {name: "RS512", family: rsaPKCS1},
	"PS256": {name: "PS256", family: rsaPSS},
	"PS384": {name: "PS384", family: rsaPSS},
	"PS512": {name: "PS512", family: rsaPSS},
	"ES256": {name: "ES256", family: ecdsaSig, curve: elliptic.P256()},
	"ES384": {name: "ES384", family: ecdsaSig, curve: elliptic.P384()},
	"ES512": {name: "ES512", family: ecdsaSig, curve: elliptic.P521()},
	"EdDSA": {name: "EdDSA", family: ed25519Sig},
}

// isSymmetric reports whether alg is "none" or an HMAC algorithm, compared
// case-insensitively so "hs256" gets the clear error too.
func isSymmetric(alg string) bool {
	return strings.EqualFold(alg, "none") || (len(alg) >= 2 && strings.EqualFold(alg[:2], "HS"))
}

// fits reports why key cannot verify a signature of a, or nil if it can. A
// key that declares its own alg fits only that alg; a key without one (as in
// many JWT_PUBLIC_SIGNING_JWK_SET settings) fits every alg of its type.
func (a *algorithm) fits(key *jose.JSONWebKey) error {
	if key.Algorithm != "" && key.Algorithm != a.name {
		return fmt.Errorf("%w: header alg %s, key %q is for %s", ErrAlgorithm, a.name, key.KeyID, key.Algorithm)
	}
	ok := false
	switch pub := key.Key.(type) {
	case *rsa.PublicKey:
		ok = (a.family == rsaPKCS1 || a.family == rsaPSS) && pub.N != nil
	case *ecdsa.PublicKey:
		// Coordinates missing (a KeySet of the caller's) would make the
		// check panic; reading them for nil is not what SA1019 warns of.
		//lint:ignore SA1019 a nil check only
		ok = a.family == ecdsaSig && pub.Curve == a.curve && pub.X != nil && pub.Y != nil
	case ed25519.PublicKey:
		// A key of another length would make ed25519.Verify panic (a
		// KeySet of the caller's may return one; parsed JWKS never do).
		ok = a.family == ed25519Sig && len(pub) == ed25519.PublicKeySize
	}
	if !ok {
		return fmt.Errorf("%w: header alg %s does not fit key %q (%s)", ErrAlgorithm, a.name, key.KeyID, keyType(key.Key))
	}
	return nil
}

// keyType names a public key's type for error messages.
func keyType(key any) string {
	switch pub := key.(type) {
	case *rsa.PublicKey:
		if pub.N == nil {
			return "RSA without modulus"
		}
		return fmt.Sprintf("RSA %d", pub.N.BitLen())
	case *ecdsa.PublicKey:
		if pub.Curve == nil {
			return "EC without curve"
		}
		return "EC " + pub.Curve.Params().Name
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Sprintf("Ed25519 of %d bytes", len(pub))
		}
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", key)
	}
}

// verify checks the signature of the compact JWS tok with key through
// go-jose, for the one algorithm the header named, and returns the payload.
// Callers check fits first for a clearer error than a failed signature.
func (a *algorithm) verify(key any, tok string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(a.name)})
	if err != nil {
		return nil, err
	}
	return jws.Verify(key)
}
