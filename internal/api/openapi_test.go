package api

import (
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/openedx-keyd/keyd/internal/jwks"
)

// TestOpenAPIMatchesRoutes keeps docs/openapi.yaml and the served routes in
// step: every route is documented and every documented route is served, and
// each documented error status has an Error body.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		OpenAPI string `yaml:"openapi"`
		Paths   map[string]map[string]struct {
			Responses map[string]any `yaml:"responses"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("docs/openapi.yaml does not parse: %v", err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", spec.OpenAPI)
	}
	var documented []string
	for path, ops := range spec.Paths {
		for method, op := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
			if len(op.Responses) == 0 {
				t.Errorf("%s %s documents no responses", method, path)
			}
		}
	}
	h := New(Config{JWKS: jwks.NewHandler(0), Gatherer: prometheus.NewRegistry()})
	served := []string{"GET " + JWKSPath, "HEAD " + JWKSPath} // served ahead of echo
	for _, r := range h.echo.Routes() {
		if strings.Contains(r.Path, "*") {
			continue // echo's own not-found routes
		}
		served = append(served, r.Method+" "+r.Path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		t.Errorf("routes and spec differ\nserved:\n  %s\ndocumented:\n  %s", strings.Join(served, "\n  "), strings.Join(documented, "\n  "))
	}
}
