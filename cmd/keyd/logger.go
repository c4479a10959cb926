package main

import (
	"io"
	"log/slog"
)

// newLogger is keyd serve's logger: JSON lines, with every time.Duration
// written as Go writes durations ("1h0m0s", as the flags take them), not as
// slog's JSON default of nanoseconds.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: durationText}))
}

// durationText is the ReplaceAttr hook of newLogger (called for attributes
// inside groups too).
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
