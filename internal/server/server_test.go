package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
)

type noEvents struct{}

func (noEvents) Emit(context.Context, rotation.Event) error { return nil }

// TestLocalServer: the local wiring and New make a server that is ready
// after Start (the first tick made the bootstrap key), stores nothing for
// clients it does not expect, and releases the data dir on Close.
func TestLocalServer(t *testing.T) {
	dir := t.TempDir()
	sched, err := config.ParseSchedule("0 0 1 * *")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Backend: "local", DataDir: dir, Algorithm: signer.ES256, Schedule: sched, RotationSchedule: "0 0 1 * *",
		PropagationDelay: 24 * time.Hour, MaxTokenLifetime: time.Hour, ClockSkew: time.Minute, JWKSMaxAge: time.Minute,
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	clk := clock.NewFake(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	w, err := Local(cfg, log, clk, func(*audit.Log) rotation.Events { return noEvents{} }, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, *w, Options{Clock: clk, Logger: log, PID: 7})
	if err != nil {
		t.Fatal(err)
	}
	stop := s.Start(context.Background())
	srv := httptest.NewServer(s.Handler)
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Ready bool `json:"ready"`
		PID   int  `json:"pid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 || !r.Ready || r.PID != 7 {
		t.Errorf("/readyz: %d %+v %v; want 200, ready, pid 7", resp.StatusCode, r, err)
	}
	resp.Body.Close()
	if s.Recorder.Stored("ecommerce") {
		t.Error("the recorder stores a client that is not expected")
	}
	srv.Close()
	stop()
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "tokens", "signer")); err != nil {
		t.Errorf("no generated signer token: %v", err)
	}
	// The lock is released: a second server opens the same data dir.
	w2, err := Local(cfg, log, clk, func(*audit.Log) rotation.Events { return noEvents{} }, func(string) string { return "" })
	if err != nil {
		t.Fatalf("the data dir is still held after Close: %v", err)
	}
	w2.Stop()
}
