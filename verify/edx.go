package verify

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// EdxSetting turns a JWKS document into the value an Open edX IDA pastes as
// its JWT_PUBLIC_SIGNING_JWK_SET setting: a compact {"keys":[...]} JSON
// document of public RSA keys. Open edX IDAs accept only RSA keys, so any
// other key is an error naming it; so is private key material.
func EdxSetting(jwks []byte) ([]byte, error) {
	raws, err := decodeJWKS(jwks)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	var set jose.JSONWebKeySet
	for i, raw := range raws {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("verify: jwks key %d: %w", i, err)
		}
		if !key.IsPublic() {
			return nil, fmt.Errorf("verify: jwks key %q holds private or symmetric key material", key.KeyID)
		}
		if _, ok := key.Key.(*rsa.PublicKey); !ok {
			return nil, fmt.Errorf("verify: key %q (alg %s, %s) is not RSA; Open edX IDAs accept only RSA keys", key.KeyID, key.Algorithm, keyType(key.Key))
		}
		set.Keys = append(set.Keys, key)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("verify: jwks has no keys")
	}
	return json.Marshal(set)
}
