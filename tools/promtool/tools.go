//go:build tools

// Package tools pins the promtool that `make rules-check` runs as
// bin/promtool to check and unit-test deploy/prometheus/keyd-rules.yml. It
// lives in its own module so Prometheus's large dependency graph never enters
// keyd's go.mod.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
