// Package deploy holds the deployment files' checks: there is no Docker
// engine on the build machines, so docker-compose.yml is validated as a file.
package deploy

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestComposeFileIsValid(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("docker-compose (Debian's 1.29) is missing; .ci/run installs it")
		}
		t.Skip("docker-compose not installed; skipping its validation")
	}
	out, err := exec.Command(bin, "-f", "../docker-compose.yml", "config", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}

func TestComposeRunsVaultAndTwoReplicas(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image       string         `yaml:"image"`
			Command     any            `yaml:"command"`
			Healthcheck map[string]any `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	v, ok := c.Services["vault"]
	if !ok || !strings.HasPrefix(v.Image, "hashicorp/vault:") || strings.HasSuffix(v.Image, ":latest") || v.Healthcheck == nil {
		t.Errorf("vault service must use a pinned hashicorp/vault image with a healthcheck: %+v", v)
	}
	replicas := 0
	for name, s := range c.Services {
		if strings.HasPrefix(name, "keyd-") {
			replicas++
			if s.Healthcheck == nil {
				t.Errorf("%s has no healthcheck", name)
			}
			if cmd, _ := yaml.Marshal(s.Command); !strings.Contains(string(cmd), "vault") {
				t.Errorf("%s does not run in Vault mode: %s", name, cmd)
			}
		}
	}
	if replicas < 2 {
		t.Errorf("%d keyd replicas, want 2", replicas)
	}
}

func TestDockerfileRunsAsNonRoot(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	if strings.Count(s, "FROM ") < 2 || !strings.Contains(s, "CGO_ENABLED=0") || !strings.Contains(s, "USER ") || strings.Contains(s, "USER root") {
		t.Error("Dockerfile must be multi-stage, build a static binary and run as a non-root user")
	}
}
