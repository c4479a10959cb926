package verify

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestVerifyEdxSetting(t *testing.T) {
	a, b := newKey(t, "RS512", "v1"), newKey(t, "RS256", "v2")
	value, err := EdxSetting(jwksOf(t, a, b))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(value, &doc); err != nil {
		t.Fatalf("setting %s is not JSON: %v", value, err)
	}
	if len(doc.Keys) != 2 {
		t.Fatalf("%d keys, want 2", len(doc.Keys))
	}
	for _, k := range doc.Keys {
		if k["kty"] != "RSA" || k["n"] == nil || k["e"] == nil || k["kid"] == nil {
			t.Errorf("key %v is not a public RSA JWK", k)
		}
		if _, private := k["d"]; private {
			t.Errorf("key %v has private material", k)
		}
	}
	if strings.ContainsAny(string(value), "\n") {
		t.Error("setting spans lines; it should paste as one value")
	}

	// It parses back, bare or as the JSON string a settings file holds.
	quoted, _ := json.Marshal(string(value))
	for _, form := range [][]byte{value, quoted} {
		keys, err := NewStaticKeySet(form)
		if err != nil {
			t.Fatalf("parse back %s: %v", form, err)
		}
		v := newTestVerifier(t, keys, newClock().Now)
		if _, err := v.Verify(context.Background(), sign(t, a, claimsAt(epoch), nil, false)); err != nil {
			t.Errorf("verify with the pasted setting: %v", err)
		}
	}
}

func TestVerifyEdxSettingRefusesNonRSA(t *testing.T) {
	rsaKey, ecKey, edKey := newKey(t, "RS512", "v1"), newKey(t, "ES256", "v2"), newKey(t, "EdDSA", "v3")
	for _, k := range []*testKey{ecKey, edKey} {
		_, err := EdxSetting(jwksOf(t, rsaKey, k))
		if err == nil {
			t.Fatalf("%s key accepted", k.alg)
		}
		for _, want := range []string{"only RSA", k.kid, k.alg} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	}
	if _, err := EdxSetting([]byte(`{"keys":[]}`)); err == nil {
		t.Error("empty set accepted")
	}
	if _, err := EdxSetting([]byte(`not json`)); err == nil {
		t.Error("garbage accepted")
	}
}

func TestVerifyStaticKeySet(t *testing.T) {
	k := newKey(t, "ES256", "v1")
	pub := string(mustJSON(t, k.public()))
	for _, tt := range []struct {
		name, doc, wantErr string
	}{
		{"no keys member", `{}`, `no "keys"`},
		{"empty", `{"keys":[]}`, "no usable"},
		{"duplicate kid", `{"keys":[` + pub + `,` + pub + `]}`, "twice"},
		{"symmetric key", `{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`, "private or symmetric"},
		{"private key", `{"keys":[` + string(mustJSON(t, jwk{Key: k.priv, KeyID: "p"})) + `]}`, "private"},
		{"only an encryption key", `{"keys":[` + strings.Replace(pub, `"use":"sig"`, `"use":"enc"`, 1) + `]}`, "no usable"},
		{"unknown kty skipped", `{"keys":[{"kty":"XYZ","kid":"x"},` + pub + `]}`, ""},
		{"garbage", `[1,2`, "parse jwks"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewStaticKeySet([]byte(tt.doc))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := LoadStaticKeySet(t.TempDir() + "/missing.json"); err == nil {
		t.Error("missing file accepted")
	}
}
