package verify

import (
	"context"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary tokens to the whole verification path, seeded with
// real tokens of every algorithm and broken ones. It must never panic, and
// must accept nothing but the seeds that are valid.
func FuzzParse(f *testing.F) {
	keys := []*testKey{newKey(f, "RS512", "lms"), newKey(f, "ES256", "lms"), newKey(f, "EdDSA", "lms"), newKey(f, "PS256", "lms")}
	clock := newClock()
	v := newTestVerifier(f, staticSet(f, keys...), clock.Now)

	valid := sign(f, keys[1], claimsAt(epoch), nil, false)
	for _, k := range keys {
		f.Add(sign(f, k, claimsAt(epoch), nil, false))
	}
	f.Add(signHMAC(f, "HS256", keys[0].kid, keys[0].publicPEM(f), claimsAt(epoch)))
	f.Add(unsigned(f, map[string]any{"alg": "none", "kid": keys[0].kid}, claimsAt(epoch)))
	f.Add(sign(f, keys[0], claimsAt(epoch), map[string]any{"jku": "https://evil"}, false))
	f.Add(sign(f, keys[2], claimsAt(epoch), nil, true))
	f.Add(unsigned(f, map[string]any{"alg": "ES256", "kid": keys[1].kid, "crit": []string{"b64"}, "b64": false}, claimsAt(epoch)) + "c2ln")
	f.Add(unsigned(f, map[string]any{"alg": "RS512", "kid": keys[0].kid}, map[string]any{"exp": 1e300, "iat": -1, "aud": []any{1}}) + "c2ln")
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add(valid[:len(valid)-3])
	f.Add("a.b.c.d.e")
	f.Add("e30.e30.")
	f.Add("bnVsbA.bnVsbA.bnVsbA")
	f.Add("")
	f.Add(".")
	f.Add("..")

	f.Fuzz(func(t *testing.T, token string) {
		claims, err := v.Verify(context.Background(), token)
		if err == nil {
			if claims == nil || claims.Raw == nil {
				t.Fatal("accepted without claims")
			}
			return
		}
		if Reason(err) == "invalid_token" || !strings.HasPrefix(err.Error(), "verify: ") {
			t.Fatalf("error outside the sentinels: %v", err)
		}
	})
}
