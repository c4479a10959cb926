package verify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/go-jose/go-jose/v4"
)

// KeySet gives the public key a token names in its kid header.
//
// Key returns an error wrapping ErrUnknownKey when the set holds no key with
// that kid; other errors (ErrStaleKeys, ErrKeySetUnavailable, a context error)
// are passed on to the caller of Verify as they are.
type KeySet interface {
	Key(ctx context.Context, kid string) (jose.JSONWebKey, error)
}

// StaticKeySet is a fixed set of public keys, such as the Open edX setting
// JWT_PUBLIC_SIGNING_JWK_SET. It is safe for concurrent use.
type StaticKeySet struct {
	keys map[string]jose.JSONWebKey
}

// NewStaticKeySet parses a JWKS document ({"keys":[...]}). The document may
// also be given as a JSON string holding it, as the value of
// JWT_PUBLIC_SIGNING_JWK_SET is in an Open edX YAML or JSON config.
// Keys that cannot sign (another use, an unknown type or alg, no kid) are
// skipped; private key material, a duplicated kid, or no usable key at all is
// an error.
func NewStaticKeySet(jwks []byte) (*StaticKeySet, error) {
	keys, err := parseJWKS(jwks)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return &StaticKeySet{keys: keys}, nil
}

// LoadStaticKeySet reads a JWKS document from a file, as NewStaticKeySet.
func LoadStaticKeySet(path string) (*StaticKeySet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("verify: read jwks: %w", err)
	}
	return NewStaticKeySet(data)
}

// Key returns the key with the given kid.
func (s *StaticKeySet) Key(_ context.Context, kid string) (jose.JSONWebKey, error) {
	key, ok := s.keys[kid]
	if !ok {
		return jose.JSONWebKey{}, fmt.Errorf("%w: kid %q is not in the key set", ErrUnknownKey, kid)
	}
	return key, nil
}

// rawJWKS is a JWKS document whose keys are not parsed yet.
type rawJWKS struct {
	Keys []json.RawMessage `json:"keys"`
}

// decodeJWKS reads the document's key list, unwrapping a JSON string first.
func decodeJWKS(data []byte) ([]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var inner string
		if err := json.Unmarshal(data, &inner); err != nil {
			return nil, fmt.Errorf("parse jwks: %w", err)
		}
		data = []byte(inner)
	}
	var doc rawJWKS
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`parse jwks: no "keys" member`)
	}
	return doc.Keys, nil
}

// parseJWKS turns a JWKS document into the signing keys it publishes, by kid.
func parseJWKS(data []byte) (map[string]jose.JSONWebKey, error) {
	raws, err := decodeJWKS(data)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]jose.JSONWebKey, len(raws))
	for i, raw := range raws {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			if errors.Is(err, jose.ErrUnsupportedKeyType) {
				continue // RFC 7517 section 5: ignore key types not understood
			}
			return nil, fmt.Errorf("parse jwks: key %d: %w", i, err)
		}
		if !key.IsPublic() {
			return nil, fmt.Errorf("parse jwks: key %q holds private or symmetric key material", key.KeyID)
		}
		if !usable(&key) {
			continue
		}
		if _, dup := keys[key.KeyID]; dup {
			return nil, fmt.Errorf("parse jwks: kid %q appears twice", key.KeyID)
		}
		keys[key.KeyID] = key
	}
	if len(keys) == 0 {
		return nil, errors.New("parse jwks: no usable signing key")
	}
	return keys, nil
}

// usable reports whether key can verify tokens: it has a kid, is meant for
// signatures, is RSA, EC or Ed25519, and, when it declares an alg, that alg is
// allowed and fits it.
func usable(key *jose.JSONWebKey) bool {
	if key.KeyID == "" || (key.Use != "" && key.Use != "sig") {
		return false
	}
	switch key.Key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return false
	}
	if key.Algorithm == "" {
		return true
	}
	alg, ok := algorithms[key.Algorithm]
	return ok && alg.fits(key) == nil
}
