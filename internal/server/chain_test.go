package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestChainWatch: the verdict follows each check that can read the chain,
// a check that cannot keeps it, and each change is logged once.
func TestChainWatch(t *testing.T) {
	var logs bytes.Buffer
	verdict := struct {
		valid bool
		err   error
	}{valid: true}
	w := &chainWatch{
		valid: func(context.Context) (bool, error) { return verdict.valid, verdict.err },
		log:   slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if !w.Valid() {
		t.Fatal("invalid before any check")
	}
	ctx := context.Background()
	for i, step := range []struct {
		valid bool
		err   error
		want  bool
	}{
		{true, nil, true},
		{false, nil, false},
		{false, nil, false},
		{true, errors.New("vault: connection refused"), false}, // unreadable: the last verdict stays
		{true, nil, true},
	} {
		verdict.valid, verdict.err = step.valid, step.err
		w.check(ctx)
		if got := w.Valid(); got != step.want {
			t.Errorf("step %d: Valid() = %v, want %v", i, got, step.want)
		}
	}
	if n := strings.Count(logs.String(), "the chain does not verify"); n != 1 {
		t.Errorf("the broken chain logged %d times, want once:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "the chain verifies again"); n != 1 {
		t.Errorf("the recovery logged %d times, want once:\n%s", n, logs.String())
	}
}
