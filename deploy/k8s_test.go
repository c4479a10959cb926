package deploy

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/openedx-keyd/keyd/internal/config"
)

// Variables the manifests may set that are not `keyd serve` flags: the
// Vault client's, the Go runtime's, and the local role tokens.
var otherEnv = map[string]bool{
	"VAULT_ADDR": true, "VAULT_TOKEN": true, "VAULT_CACERT": true, "GOMEMLIMIT": true,
	"KEYD_SIGNER_TOKEN": true, "KEYD_ADMIN_TOKEN": true, "KEYD_AUDITOR_TOKEN": true,
}

// settingFlags maps each KEYD_* variable of keyd serve to its flag name.
func settingFlags(t *testing.T) map[string]string {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	config.Flags(fs)
	env := regexp.MustCompile(`\(env (KEYD_[A-Z0-9_]+)\)`)
	out := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if m := env.FindStringSubmatch(f.Usage); m != nil {
			out[m[1]] = f.Name
		}
	})
	if len(out) < 20 {
		t.Fatalf("found %d settings in config.Flags' help; has its format changed?", len(out))
	}
	return out
}

type kustomization struct {
	ConfigMapGenerator []struct {
		Name     string   `yaml:"name"`
		Literals []string `yaml:"literals"`
	} `yaml:"configMapGenerator"`
}

// literals reads the configMapGenerator literals of a kustomization, by
// ConfigMap name.
func literals(t *testing.T, dir string) map[string]map[string]string {
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, g := range k.ConfigMapGenerator {
		out[g.Name] = map[string]string{}
		for _, l := range g.Literals {
			name, value, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("%s: literal %q is not NAME=VALUE", dir, l)
			}
			out[g.Name][name] = value
		}
	}
	return out
}

// envNames lists the `- name: X` entries of env lists in a manifest.
func envNames(t *testing.T, path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^\s+- name: ([A-Z][A-Z0-9_]*)\s*$`).FindAllStringSubmatch(string(raw), -1) {
		names = append(names, m[1])
	}
	return names
}

// parse runs keyd serve's own validation on a set of variables.
func parse(t *testing.T, flags map[string]string, env map[string]string) *config.Config {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	raw := config.Flags(fs)
	for k, v := range env {
		if f, ok := flags[k]; ok {
			*raw[f] = v
		}
	}
	c, err := config.Parse(raw)
	if err != nil {
		t.Fatalf("keyd serve refuses the manifests' settings: %v", err)
	}
	return c
}

// TestK8sSettingsAreKeydSettings: every variable the Kubernetes manifests
// set is one keyd reads, and keyd serve accepts the values.
func TestK8sSettingsAreKeydSettings(t *testing.T) {
	flags := settingFlags(t)
	files, _ := filepath.Glob("k8s/*/*.yaml")
	more, _ := filepath.Glob("k8s/overlays/*/*.yaml")
	for _, f := range append(files, more...) {
		names := envNames(t, f)
		if filepath.Base(f) == "kustomization.yaml" {
			for _, cm := range literals(t, filepath.Dir(f)) {
				for k := range cm {
					names = append(names, k)
				}
			}
		}
		for _, n := range names {
			if _, ok := flags[n]; !ok && !otherEnv[n] {
				t.Errorf("%s sets %s, which keyd does not read", f, n)
			}
		}
	}

	base := literals(t, "k8s/base")
	env := map[string]string{"KEYD_VAULT_ROLE_ID": "from-the-secret"}
	for _, cm := range []string{"keyd-config", "keyd-vault"} {
		for k, v := range base[cm] {
			env[k] = v
		}
	}
	if c := parse(t, flags, env); c.Backend != "vault" || c.VaultAuth != "approle" {
		t.Errorf("base: backend %s auth %s, want vault and approle", c.Backend, c.VaultAuth)
	}
	if c := parse(t, flags, literals(t, "k8s/overlays/local")["keyd-config"]); c.Backend != "local" || c.DataDir != "/data" {
		t.Errorf("local overlay: backend %s data dir %s, want local and /data", c.Backend, c.DataDir)
	}
}
