package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/jwks"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
	"github.com/openedx-keyd/keyd/internal/signer/local"
)

// readBackend is a backend whose reads can be made unavailable.
type readBackend struct {
	signer.Backend
	down atomic.Bool
}

func (b *readBackend) Keys(ctx context.Context) ([]signer.Key, error) {
	if b.down.Load() {
		return nil, signer.ErrUnavailable
	}
	return b.Backend.Keys(ctx)
}

// /readyz (docs/design.md "Vault HA"): 200 while the backend is down until the
// last successful refresh is older than propagation-delay - jwks-max-age,
// then 503 while the JWKS is still served; a failing backend login is
// reported while it lasts.
func TestReadyzStaleness(t *testing.T) {
	lb, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := &readBackend{Backend: lb}
	sched, _ := config.ParseSchedule("0 0 1 * *")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	clk := clock.NewFake(now)
	handler := jwks.NewHandler(5 * time.Minute)
	const propagation, maxAge = 24 * time.Hour, 5 * time.Minute
	mgr, err := rotation.New(rotation.Config{
		Backend: b, Rules: rotation.Rules{Schedule: sched, ScheduleSpec: "0 0 1 * *", PropagationDelay: propagation, RetireAfter: time.Hour},
		Algorithm: signer.ES256, Clock: clk, Events: noEvents{}, Logger: log,
		OnChange: api.PublishKeys(handler, log), StaleAfter: propagation - maxAge,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := mgr.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	var login atomic.Value
	login.Store("")
	h := api.New(api.Config{
		Backend: b, Lifecycle: mgr, JWKS: handler, Logger: log,
		Login: func() string { return login.Load().(string) },
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	readyz := func() (int, map[string]any) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	jwksStatus := func() int {
		resp, err := http.Get(srv.URL + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	b.down.Store(true)
	for _, step := range []struct {
		after time.Duration
		want  int
	}{{time.Hour, 200}, {propagation - maxAge, 200}, {propagation - maxAge + time.Second, 503}} {
		clk.Set(now.Add(step.after))
		_ = mgr.Tick(ctx)
		if got, body := readyz(); got != step.want {
			t.Errorf("%v after the last refresh, backend down: /readyz %d %v, want %d", step.after, got, body, step.want)
		}
		if ready := h.Ready(); ready != (step.want == 200) {
			t.Errorf("%v after the last refresh: Ready() = %v (keyd_ready), /readyz wants %d", step.after, ready, step.want)
		}
		if got := jwksStatus(); got != 200 {
			t.Errorf("%v after the last refresh: JWKS %d, want 200", step.after, got)
		}
	}
	b.down.Store(false)
	if err := mgr.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got, body := readyz(); got != 200 {
		t.Errorf("after a refresh: /readyz %d %v", got, body)
	}

	login.Store("vault approle login failed: invalid role or secret ID")
	got, body := readyz()
	if got != 200 || body["backend_login_problem"] != "vault approle login failed: invalid role or secret ID" {
		t.Errorf("failing login: /readyz %d %v, want 200 naming the login problem", got, body)
	}
	login.Store("")
	if _, body := readyz(); body["backend_login_problem"] != nil {
		t.Errorf("login works again, /readyz still reports %v", body["backend_login_problem"])
	}
}
