package signer

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// KID returns the RFC 7638 SHA-256 thumbprint of a public key, base64url:
// the key ID keyd publishes.
func KID(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// SigningKey names the key a token is signed with. It carries no key
// material: the signature comes from the Backend.
type SigningKey struct {
	Version int
	Alg     Algorithm
	KID     string
	header  string // base64url of the protected header, computed once
}

// NewSigningKey prepares the fixed JWS header {"alg","kid","typ":"JWT"} of a key.
func NewSigningKey(version int, alg Algorithm, kid string) SigningKey {
	// alg and kid are from a fixed set and base64url alphabets: no escaping needed.
	h := `{"alg":"` + string(alg) + `","kid":"` + kid + `","typ":"JWT"}`
	return SigningKey{Version: version, Alg: alg, KID: kid, header: base64.RawURLEncoding.EncodeToString([]byte(h))}
}

// Signer is the one backend call a JWS needs: Backend.Sign.
type Signer interface {
	Sign(ctx context.Context, cred Credential, v int, alg Algorithm, input []byte) ([]byte, error)
}

// Assemble builds a compact JWS over payload: the header is keyd's own, the
// signature comes from b with cred, and the caller never influences either.
func Assemble(ctx context.Context, b Signer, cred Credential, k SigningKey, payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(k.header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(512))
	buf = append(buf, k.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig, err := b.Sign(ctx, cred, k.Version, k.Alg, buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}
