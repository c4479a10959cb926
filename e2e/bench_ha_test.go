package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestBenchVaultHA is the Vault HA row (6) of `make bench` (bench/run runs it
// with KEYD_BENCH_HA=1; otherwise it is skipped): on a real 3-node Raft
// cluster, keyd signing RS512 through a standby (forwarded to the active
// node) vs through the active node, closed loop with BENCH_CONNECTIONS
// workers for BENCH_DURATION seconds, BENCH_ROUNDS rounds alternating; then
// the sign latency at 100 signs/s through a `vault operator step-down`, and
// the election gaps of a step-down and a kill -9. It prints Markdown rows.
func TestBenchVaultHA(t *testing.T) {
	if os.Getenv("KEYD_BENCH_HA") == "" {
		t.Skip("a benchmark: bench/run runs it (KEYD_BENCH_HA=1)")
	}
	env := func(name string, def int) int {
		if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
			return n
		}
		return def
	}
	rounds, secs, conns := env("BENCH_ROUNDS", 5), env("BENCH_DURATION", 10), env("BENCH_CONNECTIONS", 16)
	e := bootstrapCluster(t)
	leader, sb := e.c.Leader(), e.c.Standbys()
	viaStandby := e.start(t, []string{sb[0].Addr})
	viaActive := e.start(t, []string{leader.Addr})

	var standby, active []bench
	for r := range rounds {
		order := []string{"standby", "active"}
		if r%2 == 1 {
			order = []string{"active", "standby"}
		}
		for _, which := range order {
			if which == "standby" {
				standby = append(standby, closedLoop(viaStandby.URL, e.lms, conns, time.Duration(secs)*time.Second))
			} else {
				active = append(active, closedLoop(viaActive.URL, e.lms, conns, time.Duration(secs)*time.Second))
			}
		}
	}
	s, a := medianBench(standby), medianBench(active)
	fmt.Printf("| 6 sign RS512 via a standby vs via the active node (3-node Raft) | %.0f/s | %.0f/s | %.2f | info | — | %.2f / %.2f ms | %.2f / %.2f ms |\n",
		s.rps, a.rps, s.rps/a.rps, ms(s.p50), ms(s.p99), ms(a.p50), ms(a.p99))

	// 100 signs/s through a step-down, on the standby replica.
	stop := signLoad([]string{viaStandby.URL}, e.lms, 100)
	time.Sleep(3 * time.Second)
	stepAt := time.Now()
	old := e.c.StepDown(t)
	for n := e.c.Leader(); n == nil || n == old; n = e.c.Leader() {
		time.Sleep(10 * time.Millisecond)
	}
	stepGap := time.Since(stepAt)
	time.Sleep(4 * time.Second)
	results := stop()
	var lat []time.Duration
	failed := 0
	for _, r := range window(results, stepAt.Add(-time.Second), stepAt.Add(3*time.Second)) {
		lat = append(lat, r.done.Sub(r.at))
		if r.status != 200 {
			failed++
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	var base []time.Duration
	for _, r := range window(results, time.Time{}, stepAt.Add(-time.Second)) {
		base = append(base, r.done.Sub(r.at))
	}
	sort.Slice(base, func(i, j int) bool { return base[i] < base[j] })
	fmt.Printf("| 6s sign p99 at 100/s through a step-down (1 s before to 3 s after), via a standby | p99 %.1f ms, max %.1f ms, %d of %d failed | p99 %.1f ms before | — | info | — | new leader after %v | — |\n",
		ms(pct(lat, 99)), ms(pct(lat, 100)), failed, len(lat), ms(pct(base, 99)), stepGap.Round(time.Millisecond))

	killAt := time.Now()
	e.c.KillLeader(t)
	for e.c.Leader() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("| 6k election gap after kill -9 of the leader (performance_multiplier = 1) | %v | — | — | info | — | — | — |\n", time.Since(killAt).Round(time.Millisecond))
}

type bench struct {
	rps      float64
	p50, p99 time.Duration
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

// closedLoop signs through url with conns workers for d and reports the
// 200s per second and their latency percentiles.
func closedLoop(url, token string, conns int, d time.Duration) bench {
	body, _ := json.Marshal(testClaims)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
	var (
		mu  sync.Mutex
		lat []time.Duration
		wg  sync.WaitGroup
	)
	end := time.Now().Add(d)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				req, _ := http.NewRequest("POST", url+"/v1/sign", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mine = append(mine, time.Since(t0))
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return bench{rps: float64(len(lat)) / d.Seconds(), p50: pct(lat, 50), p99: pct(lat, 99)}
}

func medianBench(bs []bench) bench {
	med := func(f func(bench) float64) float64 {
		v := make([]float64, len(bs))
		for i, b := range bs {
			v[i] = f(b)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return bench{
		rps: med(func(b bench) float64 { return b.rps }),
		p50: time.Duration(med(func(b bench) float64 { return float64(b.p50) })),
		p99: time.Duration(med(func(b bench) float64 { return float64(b.p99) })),
	}
}
