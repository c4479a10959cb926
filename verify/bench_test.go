package verify

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// BenchmarkVerify is the whole Verify with a warm static key set.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"ES256", "RS512"} {
		b.Run(alg, func(b *testing.B) {
			key := newKey(b, alg, "lms")
			v := newTestVerifier(b, staticSet(b, key), newClock().Now)
			token := sign(b, key, claimsAt(epoch), nil, false)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGoJoseRaw is the floor to compare with: go-jose parsing and
// verifying with the known key, then decoding the claims, and no checks.
func BenchmarkGoJoseRaw(b *testing.B) {
	for _, alg := range []string{"ES256", "RS512"} {
		b.Run(alg, func(b *testing.B) {
			key := newKey(b, alg, "lms")
			token := sign(b, key, claimsAt(epoch), nil, false)
			pub := key.priv.Public()
			algs := []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)}
			b.ReportAllocs()
			for b.Loop() {
				obj, err := jose.ParseSignedCompact(token, algs)
				if err != nil {
					b.Fatal(err)
				}
				payload, err := obj.Verify(pub)
				if err != nil {
					b.Fatal(err)
				}
				var claims map[string]any
				if err := json.Unmarshal(payload, &claims); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
