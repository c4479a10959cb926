package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"math/big"
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
	hash   crypto.Hash    // unused for EdDSA, which signs the message itself
	curve  elliptic.Curve // ECDSA only
}

// algorithms is the allow-list: asymmetric JWS algorithms only.
var algorithms = map[string]*algorithm{
	"RS256": {name: "RS256", family: rsaPKCS1, hash: crypto.SHA256},
	"RS384": {name: "RS384", family: rsaPKCS1, hash: crypto.SHA384},
	"RS512": {name: "RS512", family: rsaPKCS1, hash: crypto.SHA512},
	"PS256": {name: "PS256", family: rsaPSS, hash: crypto.SHA256},
	"PS384": {name: "PS384", family: rsaPSS, hash: crypto.SHA384},
	"PS512": {name: "PS512", family: rsaPSS, hash: crypto.SHA512},
	"ES256": {name: "ES256", family: ecdsaSig, hash: crypto.SHA256, curve: elliptic.P256()},
	"ES384": {name: "ES384", family: ecdsaSig, hash: crypto.SHA384, curve: elliptic.P384()},
	"ES512": {name: "ES512", family: ecdsaSig, hash: crypto.SHA512, curve: elliptic.P521()},
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
		ok = a.family == rsaPKCS1 || a.family == rsaPSS
	case *ecdsa.PublicKey:
		ok = a.family == ecdsaSig && pub.Curve == a.curve
	case ed25519.PublicKey:
		ok = a.family == ed25519Sig
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
		return fmt.Sprintf("RSA %d", pub.N.BitLen())
	case *ecdsa.PublicKey:
		return "EC " + pub.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", key)
	}
}

var errSignature = errors.New("signature mismatch")

// verify checks sig over signingInput with key. A key of the wrong type
// fails like a bad signature; callers check fits first for a clearer error.
func (a *algorithm) verify(key any, signingInput, sig []byte) error {
	switch pub := key.(type) {
	case *rsa.PublicKey:
		if pub.N == nil {
			return errSignature
		}
		switch a.family {
		case rsaPKCS1:
			return rsa.VerifyPKCS1v15(pub, a.hash, digest(a.hash, signingInput), sig)
		case rsaPSS:
			// RFC 7518 section 3.5: the salt is as long as the hash.
			opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}
			return rsa.VerifyPSS(pub, a.hash, digest(a.hash, signingInput), sig, opts)
		}
	case *ecdsa.PublicKey:
		if a.family != ecdsaSig || pub.Curve != a.curve {
			return errSignature
		}
		// JWS carries R || S, each as long as the curve's order (RFC 7518 section 3.4).
		size := (a.curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return errSignature
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if ecdsa.Verify(pub, digest(a.hash, signingInput), r, s) {
			return nil
		}
	case ed25519.PublicKey:
		if a.family == ed25519Sig && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, signingInput, sig) {
			return nil
		}
	}
	return errSignature
}

// digest hashes data with one of the three hashes the allow-list uses.
func digest(h crypto.Hash, data []byte) []byte {
	switch h {
	case crypto.SHA256:
		sum := sha256.Sum256(data)
		return sum[:]
	case crypto.SHA384:
		sum := sha512.Sum384(data)
		return sum[:]
	default:
		sum := sha512.Sum512(data)
		return sum[:]
	}
}
