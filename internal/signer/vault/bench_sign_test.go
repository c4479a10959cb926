package vault

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/policies"
)

// TestBenchSignConcurrency measures the batcher against a real Vault, in
// process (no keyd HTTP layer): n concurrent signers (1, 8, 64), each
// signing in a closed loop, through keyd's Backend with a given number of
// calls in flight per lane, and, as the reference, the same token signing
// one input per transit call on the same kind of client. It prints
// throughput and p50/p99 per variant. Run it alone:
//
//	KEYD_BENCH_SIGN=1 go test -run TestBenchSignConcurrency -v ./internal/signer/vault/
//
// Settings: KEYD_BENCH_ALG (ES256), KEYD_BENCH_ROUNDS (3),
// KEYD_BENCH_DURATION (2s), KEYD_BENCH_SENDERS (the variants: calls in
// flight per lane, "1,2,4").
func TestBenchSignConcurrency(t *testing.T) {
	if os.Getenv("KEYD_BENCH_SIGN") == "" {
		t.Skip("a benchmark: set KEYD_BENCH_SIGN=1")
	}
	alg := signer.Algorithm(envOr("KEYD_BENCH_ALG", "ES256"))
	rounds := 3
	fmt.Sscan(envOr("KEYD_BENCH_ROUNDS", "3"), &rounds)
	dur, err := time.ParseDuration(envOr("KEYD_BENCH_DURATION", "2s"))
	if err != nil {
		t.Fatal(err)
	}
	e := setup(t, alg)
	k := e.create(t, 1)[0]
	lms := e.srv.Token(t, policies.LMSSigner)
	client, _, err := NewRoutedClient([]string{e.srv.Addr}, 30*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(e.serverToken)
	b := e.newBackend(t, client, nil)
	direct, _, err := NewRoutedClient([]string{e.srv.Addr}, 30*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	direct.SetToken(lms)
	// A login's JWS signing input: about the size keyd sends.
	input := []byte(strings.Repeat("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.", 14))
	params, _ := signParams(alg)

	type variant struct {
		name  string
		limit int // calls in flight per lane; 0: not through keyd
		sign  func(ctx context.Context) error
	}
	var variants []variant
	for _, s := range strings.Split(envOr("KEYD_BENCH_SENDERS", "1,2,4"), ",") {
		var n int
		fmt.Sscan(s, &n)
		variants = append(variants, variant{fmt.Sprintf("keyd, %d in flight", n), n, func(ctx context.Context) error {
			_, err := b.Sign(ctx, signer.Credential{Token: lms}, k.Version, alg, input)
			return err
		}})
	}
	variants = append(variants, variant{"direct Vault", 0, func(ctx context.Context) error {
		body := map[string]any{"input": base64.StdEncoding.EncodeToString(input), "key_version": k.Version, "marshaling_algorithm": "jws"}
		for p, v := range params {
			body[p] = v
		}
		_, err := direct.Logical().WriteWithContext(ctx, e.mount+"/sign/"+e.key, body)
		return err
	}})

	fmt.Printf("\n%s, %d rounds of %s, in process, real Vault (%s)\n\n", alg, rounds, dur, e.srv.Addr)
	fmt.Println("| signers | way | signs/s | p50 ms | p99 ms | failed |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, n := range []int{1, 8, 64} {
		rates := make([][]float64, len(variants))
		lat := make([][]time.Duration, len(variants))
		failed := make([]int, len(variants))
		for r := range rounds {
			order := make([]int, len(variants))
			for i := range order {
				order[i] = i
			}
			if r%2 == 1 {
				slices.Reverse(order)
			}
			for _, i := range order {
				v := variants[i]
				// No sign is in flight now.
				b.batches.limit = func(signer.Algorithm) int { return v.limit }
				if err := v.sign(context.Background()); err != nil { // warms the variant
					t.Fatal(err)
				}
				d, count, bad := closedLoop(n, dur, v.sign)
				rates[i] = append(rates[i], float64(count)/dur.Seconds())
				failed[i] += bad
				lat[i] = append(lat[i], d...)
			}
		}
		for i, v := range variants {
			fmt.Printf("| %d | %s | %.0f | %.2f | %.2f | %d |\n", n, v.name, medianOf(rates[i]),
				ms(quantile(lat[i], 0.50)), ms(quantile(lat[i], 0.99)), failed[i])
		}
	}
	fmt.Println()
}

// closedLoop runs n goroutines calling sign back to back for d and returns
// the latency of every successful call, their number, and the failed calls
// (each bounded by 10 s).
func closedLoop(n int, d time.Duration, sign func(context.Context) error) ([]time.Duration, int, int) {
	var mu sync.Mutex
	var all []time.Duration
	failed := 0
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Now().Before(end) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				if err := sign(ctx); err != nil {
					bad++
				} else {
					mine = append(mine, time.Since(t0))
				}
				cancel()
			}
			mu.Lock()
			all = append(all, mine...)
			failed += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, len(all), failed
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s)-1)+0.5))]
}

func medianOf(x []float64) float64 {
	s := slices.Clone(x)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
