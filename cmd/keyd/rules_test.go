package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestAlertRulesUseExportedMetrics: every keyd_* metric the Prometheus
// alerts of deploy/prometheus read is one a running keyd exports, and every
// sign result they count is one keyd records (promtool's own tests cannot
// see a misspelt name: a series that never exists never fires).
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/prometheus/keyd-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}

	p := startKeyd(t, filepath.Join(t.TempDir(), "data"), nil)
	p.sign(t, p.token(t, "signer")) // a counter appears once counted
	_, body := p.call(t, http.MethodGet, "/metrics", "", "")
	exported := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (keyd_\w+) `).FindAllStringSubmatch(string(body), -1) {
		exported[m[1]] = true
	}
	src, err := os.ReadFile("../../internal/issue/issue.go")
	if err != nil {
		t.Fatal(err)
	}

	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			for _, name := range regexp.MustCompile(`\bkeyd_\w+`).FindAllString(r.Expr, -1) {
				if !exported[name] {
					t.Errorf("%s reads %s, which keyd does not export", r.Alert, name)
				}
			}
			for _, m := range regexp.MustCompile(`result=~?"([^"]+)"`).FindAllStringSubmatch(r.Expr, -1) {
				for _, result := range strings.Split(m[1], "|") {
					if !strings.Contains(string(src), `SignRequest("`+result+`"`) {
						t.Errorf("%s counts sign result %q, which keyd never records", r.Alert, result)
					}
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("%d alerts read from keyd-rules.yml, want the full set", n)
	}
}
