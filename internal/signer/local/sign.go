package local

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"math/big"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Sign signs input with version v. The credential was checked by the API.
func (b *Backend) Sign(ctx context.Context, _ signer.Credential, v int, alg signer.Algorithm, input []byte) ([]byte, error) {
	b.followPin()
	if int64(v) < b.pinned.Load() {
		return nil, fmt.Errorf("local: version %d no longer signs (pinned to %d or newer): %w", v, b.pinned.Load(), signer.ErrNoKey)
	}
	e, err := b.load(v)
	if err != nil {
		return nil, err
	}
	if e.rec.Algorithm != alg {
		return nil, fmt.Errorf("local: key %d is %s, not %s", v, e.rec.Algorithm, alg)
	}
	return signWith(e.priv, alg, input)
}

// fits reports whether priv is the kind of key alg signs with, so that a
// key file whose record and key disagree is refused instead of panicking.
func fits(alg signer.Algorithm, priv crypto.Signer) bool {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return alg == signer.RS512 || alg == signer.RS256
	case *ecdsa.PrivateKey:
		return alg == signer.ES256 && k.Curve == elliptic.P256()
	case ed25519.PrivateKey:
		return alg == signer.EdDSA
	}
	return false
}

func signWith(priv crypto.Signer, alg signer.Algorithm, input []byte) ([]byte, error) {
	switch alg {
	case signer.RS512:
		h := sha512.Sum512(input)
		return rsa.SignPKCS1v15(nil, priv.(*rsa.PrivateKey), crypto.SHA512, h[:])
	case signer.RS256:
		h := sha256.Sum256(input)
		return rsa.SignPKCS1v15(nil, priv.(*rsa.PrivateKey), crypto.SHA256, h[:])
	case signer.ES256:
		h := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, priv.(*ecdsa.PrivateKey), h[:])
		if err != nil {
			return nil, err
		}
		return rsConcat(r, s, 32), nil
	case signer.EdDSA:
		return ed25519.Sign(priv.(ed25519.PrivateKey), input), nil
	}
	return nil, fmt.Errorf("local: unsupported algorithm %q", alg)
}

// rsConcat is the JWS form of an ECDSA signature: R and S, each left-padded.
func rsConcat(r, s *big.Int, size int) []byte {
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out
}

func generate(alg signer.Algorithm) (crypto.Signer, error) {
	switch alg {
	case signer.RS512, signer.RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	case signer.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case signer.EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("local: unsupported algorithm %q", alg)
}
