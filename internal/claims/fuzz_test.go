package claims

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzBuild checks that no body makes Build panic or fail other than with a
// 400 or 422 *Error, and that every accepted body yields a payload that is
// canonical JSON, within the policy, and means what the caller's claims meant.
func FuzzBuild(f *testing.F) {
	for _, s := range []string{
		`{"claims":` + openEdXClaims + `}`,
		`{"claims":` + openEdXClaims + `,"ttl":"15m"}`,
		req(`,"iat":1699999990,"exp":1700000590`, ""),
		req(`,"iat":1.7e9,"exp":1700000600.0,"nbf":1699999999.5,"jti":"abc"`, ""),
		req(`,"big":12345678901234567890,"n":{"a":[1,{"b":"\u00e9\ud83d\ude00\n"}],"c":-0.5e-3}`, `,"ttl":"90s"`),
		req(`,"html":"<&>","sep":"`+"\u2028\u2029"+`","ctl":"\u0000\u001f\b\f"`, ""),
		req(`,"aud":["a","b"]`, ""),
		req(`,"sub":"twice"`, ""),
		req(`,"o":{"k":1,"k":2}`, ""),
		req("", `,"header":{"alg":"none"}`),
		req("", `,"ttl":"10h"`),
		req("", `,"ttl":"forever"`),
		req(`,"iat":1700000000`, ""),
		req(`,"iat":1700000000,"exp":1700007200`, ""),
		req(`,"x":"\ud800"`, ""),
		req(`,"x":"`+"\xff"+`"`, ""),
		reqWithout("grant_type", `,"grant_type":""`),
		reqWithout("iss", `,"iss":"https://evil.example/oauth2"`),
		`{"claims":"x"}`,
		`{"claims":{}}`,
		`{not json`,
		`[[[[[[[[[[`,
		``,
		`{"claims":{}} x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := testPolicy.Build(body, testNow, onesReader{})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if e.Status != 400 && e.Status != 422 || e.Code == "" || e.Message == "" {
				t.Fatalf("error %#v: want status 400 or 422 with a code and a message", e)
			}
			if !utf8.ValidString(e.Message) {
				t.Fatalf("message %q is not valid UTF-8", e.Message)
			}
			return
		}

		payload := decodeNumbers(t, tok.Payload)
		iat, errIAT := payload["iat"].(json.Number).Int64()
		exp, errEXP := payload["exp"].(json.Number).Int64()
		if errIAT != nil || errEXP != nil {
			t.Fatalf("iat %v, exp %v are not integers", payload["iat"], payload["exp"])
		}
		if !(iat < exp) || exp-iat > int64(testPolicy.MaxLifetime.Seconds()) {
			t.Fatalf("iat %d, exp %d break the lifetime rules", iat, exp)
		}
		if tok.IssuedAt.Unix() != iat || tok.ExpiresAt.Unix() != exp {
			t.Fatalf("IssuedAt %v, ExpiresAt %v do not match iat %d, exp %d", tok.IssuedAt, tok.ExpiresAt, iat, exp)
		}
		// keyd's encoding is the one encoding/json gives the same claims.
		if want := encodeNoHTML(t, payload); !bytes.Equal(tok.Payload, want) {
			t.Fatalf("payload is not canonical:\n got %s\nwant %s", tok.Payload, want)
		}
		// Apart from the claims keyd sets, the payload holds the caller's claims.
		var in struct{ Claims map[string]any }
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&in); err != nil {
			t.Fatalf("encoding/json cannot decode an accepted body: %v", err)
		}
		for _, name := range []string{"iat", "exp"} {
			delete(in.Claims, name)
			delete(payload, name)
		}
		if _, ok := in.Claims["jti"]; !ok {
			delete(payload, "jti")
		}
		if !reflect.DeepEqual(in.Claims, payload) {
			t.Fatalf("claims changed:\n  in %v\n out %v", in.Claims, payload)
		}
	})
}

func decodeNumbers(t *testing.T, data []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("payload %s is not a JSON object: %v", data, err)
	}
	if dec.More() {
		t.Fatalf("payload %s has trailing data", data)
	}
	return m
}

func encodeNoHTML(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
