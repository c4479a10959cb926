package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// check runs k8scheck on one YAML text and returns its exit code and the
// problem lines.
func check(t *testing.T, text string) (int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{path}, &out, &errOut)
	return code, strings.ReplaceAll(out.String(), path, "in.yaml")
}

func fixture(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("testdata/keyd-deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// edit replaces old (which must occur once) in the fixture.
func edit(t *testing.T, old, new string) string {
	t.Helper()
	f := fixture(t)
	if strings.Count(f, old) != 1 {
		t.Fatalf("fixture holds %q %d times, want once", old, strings.Count(f, old))
	}
	return strings.Replace(f, old, new, 1)
}

func TestFixturePasses(t *testing.T) {
	if code, out := check(t, fixture(t)); code != 0 || !strings.Contains(out, "1 objects valid") {
		t.Fatalf("exit %d, want 0:\n%s", code, out)
	}
}

// TestRefusesWhatTheSchemaRefuses: strict decoding into the k8s.io/api
// types, as the API server with fieldValidation=Strict.
func TestRefusesWhatTheSchemaRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // each must appear in the output
	}{
		{"unknown field", edit(t, "  replicas: 2", "  replicas: 2\n  replicass: 3"),
			[]string{`in.yaml (document 1): Deployment/keyd: unknown field "spec.replicass"`}},
		{"unknown nested field", edit(t, "          image: registry", "          imagePullPolicyy: Always\n          image: registry"),
			[]string{`Deployment/keyd: unknown field "spec.template.spec.containers[0].imagePullPolicyy"`}},
		{"duplicate field", edit(t, "  replicas: 2", "  replicas: 2\n  replicas: 3"),
			[]string{`in.yaml (document 1): not valid YAML`, `key "replicas" already set`}},
		{"wrong type", edit(t, "replicas: 2", `replicas: "two"`),
			[]string{`Deployment/keyd: `, `cannot unmarshal string`, `spec.replicas`, `int32`}},
		{"wrong type of a quantity", edit(t, "limits: {memory: 128Mi}", "limits: {memory: lots}"),
			[]string{`Deployment/keyd: `, `quantities must match the regular expression`}},
		{"missing kind", edit(t, "kind: Deployment\n", ""),
			[]string{`in.yaml (document 1): ?/keyd: kind: missing`}},
		{"missing apiVersion", edit(t, "apiVersion: apps/v1\n", ""),
			[]string{`in.yaml (document 1): Deployment/keyd: apiVersion: missing`}},
		{"missing both", "metadata: {name: x}\n",
			[]string{`in.yaml (document 1): ?/x: apiVersion, kind: missing`}},
		{"unknown kind", edit(t, "kind: Deployment", "kind: Deploymint"),
			[]string{`Deploymint/keyd: kind: unknown kind Deploymint in apps/v1`}},
		{"kind of a removed version", "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {minAvailable: 1, selector: {matchLabels: {a: b}}}\n",
			[]string{`PodDisruptionBudget/x: kind: PodDisruptionBudget is not served in policy/v1beta1; use policy/v1`}},
		{"custom resource", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\n",
			[]string{`ServiceMonitor/x: kind: unknown kind ServiceMonitor in monitoring.coreos.com/v1`}},
		{"not a mapping", "- a\n- b\n",
			[]string{`in.yaml (document 1): not a Kubernetes object`}},
		{"second document", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n# comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndatta: {}\n",
			[]string{`in.yaml (document 2): ConfigMap/bad: unknown field "datta"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := check(t, tc.text)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestRefusesWhatTheAPIServerValidates: rules the schema cannot express.
func TestRefusesWhatTheAPIServerValidates(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"selector does not match the template", edit(t, "    matchLabels: {app: keyd}", "    matchLabels: {app: other}"),
			"Deployment/keyd: spec.selector: does not match the pod template's labels"},
		{"bad name", edit(t, "  name: keyd\n", "  name: Keyd_1\n"),
			"Deployment/Keyd_1: metadata.name: a lowercase RFC 1123 subdomain"},
		{"bad label value", edit(t, "  name: keyd\n  labels: {app: keyd}", "  name: keyd\n  labels: {app: \"a b\"}"),
			"metadata.labels[app]: a valid label must be"},
		{"mount of a missing volume", edit(t, "{name: approle, mountPath", "{name: approles, mountPath"),
			`spec.template.spec.containers[0].volumeMounts[0].name: no volume named "approles" in the pod`},
		{"probe on a missing port", edit(t, "httpGet: {path: /readyz, port: http}", "httpGet: {path: /readyz, port: web}"),
			`spec.template.spec.containers[0].readinessProbe.port: no container port named "web"`},
		{"probe path", edit(t, "          livenessProbe:\n", "          startupProbe:\n            httpGet: {path: healthz, port: http}\n          livenessProbe:\n"),
			`startupProbe.httpGet.path: must start with /, got "healthz"`},
		{"recreate with rollingUpdate", edit(t, "type: RollingUpdate", "type: Recreate"),
			"spec.strategy.rollingUpdate: may not be set with type Recreate"},
		{"bad env name", edit(t, "- name: KEYD_VAULT_ROLE_ID", "- name: KEYD VAULT ROLE ID"),
			"spec.template.spec.containers[0].env[0].name: a valid environment variable name"},
		{"two volume sources", edit(t, "            defaultMode: 0400\n", "            defaultMode: 0400\n          emptyDir: {}\n"),
			"spec.template.spec.volumes[0]: must have exactly one volume source"},
		{"job restart policy", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: busybox}]\n",
			`Job/j: spec.template.spec.restartPolicy: must be Never or OnFailure for a Job, got ""`},
		{"service without ports", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {a: b}}\n",
			"Service/s: spec.ports: missing"},
		{"pdb with both", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p}\nspec: {minAvailable: 1, maxUnavailable: 1, selector: {matchLabels: {a: b}}}\n",
			"PodDisruptionBudget/p: spec: set exactly one of minAvailable and maxUnavailable"},
		{"secret in a ConfigMap", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {KEYD_ADMIN_TOKEN: abc, KEYD_MAX_TOKEN_LIFETIME: 1h}\n",
			"ConfigMap/c: data[KEYD_ADMIN_TOKEN]: looks like a secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := check(t, tc.text)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want 1 and %q in:\n%s", code, tc.want, out)
			}
			if strings.Count(out, "\n") != 1 {
				t.Errorf("want exactly one problem line:\n%s", out)
			}
		})
	}
}

// TestKeydPodPolicy: a pod that runs keyd is hardened and probed.
func TestKeydPodPolicy(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"no readiness probe", edit(t, "          readinessProbe:\n            httpGet: {path: /readyz, port: http}\n", ""),
			"containers[0].readinessProbe: must be an httpGet of /readyz"},
		{"liveness on the wrong path", edit(t, "path: /healthz", "path: /readyz"),
			"containers[0].livenessProbe: must be an httpGet of /healthz"},
		{"root allowed", edit(t, "runAsNonRoot: true", "runAsNonRoot: false"),
			"containers[0].securityContext.runAsNonRoot: must be true"},
		{"uid 0", edit(t, "runAsUser: 65532", "runAsUser: 0"),
			"containers[0].securityContext.runAsUser: must not be 0"},
		{"writable root filesystem", edit(t, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"),
			"containers[0].securityContext.readOnlyRootFilesystem: must be true"},
		{"privilege escalation", edit(t, "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"),
			"containers[0].securityContext.allowPrivilegeEscalation: must be false"},
		{"capabilities kept", edit(t, "capabilities: {drop: [ALL]}", "capabilities: {drop: [NET_RAW]}"),
			"containers[0].securityContext.capabilities: must drop ALL and add none"},
		{"no seccomp profile", edit(t, "        seccompProfile: {type: RuntimeDefault}\n", ""),
			"containers[0].securityContext.seccompProfile: must be RuntimeDefault or Localhost"},
		{"service account token", edit(t, "automountServiceAccountToken: false", "automountServiceAccountToken: true"),
			"automountServiceAccountToken: must be false"},
		{"no memory limit", edit(t, "            limits: {memory: 128Mi}\n", ""),
			"containers[0].resources.limits.memory: missing"},
		{"secret file readable by all", edit(t, "defaultMode: 0400", "defaultMode: 0644"),
			"volumes[0].secret.defaultMode: must be 0400"},
		{"secret by value", edit(t, "              valueFrom:\n                secretKeyRef: {name: keyd-approle, key: role-id}\n            - name: KEYD_VAULT_SECRET_ID_FILE",
			"              value: abc\n            - name: KEYD_VAULT_SECRET_ID\n              value: s3cr3t\n            - name: KEYD_VAULT_SECRET_ID_FILE"),
			"containers[0].env[1]: KEYD_VAULT_SECRET_ID holds a secret by value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := check(t, tc.text)
			if want := "in.yaml (document 1): Deployment/keyd: spec.template.spec." + tc.want; code != 1 || !strings.Contains(out, want) {
				t.Errorf("exit %d, want 1 and %q in:\n%s", code, want, out)
			}
		})
	}
	// The policy is keyd's: the same pod with another image is not held to it.
	other := strings.ReplaceAll(edit(t, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"), "registry.example.com/keyd:1.2.3", "nginx:1.27")
	if code, out := check(t, other); code != 0 {
		t.Errorf("a non-keyd image is held to keyd's policy: exit %d\n%s", code, out)
	}
}

func TestIsKeydImage(t *testing.T) {
	for image, want := range map[string]bool{
		"keyd": true, "keyd:latest": true, "keyd-tools:1.0": true, "registry:5000/org/keyd:1.0": true,
		"ghcr.io/openedx-keyd/keyd@sha256:abc": true, "keydx:1": false, "nginx": false, "registry:5000/keyd-other": false,
	} {
		if got := isKeydImage(image); got != want {
			t.Errorf("isKeydImage(%q) = %v, want %v", image, got, want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage: k8scheck") {
		t.Errorf("no arguments: exit %d, want 2 and the usage:\n%s", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"testdata/absent.yaml"}, &out, &errOut); code != 1 || !strings.Contains(out.String(), "testdata/absent.yaml: open") {
		t.Errorf("a missing file: exit %d, want 1 and one line naming it:\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"-kustomize", "testdata"}, &out, &errOut); code != 1 || !strings.Contains(out.String(), "testdata: kustomize build:") {
		t.Errorf("a directory without a kustomization: exit %d, want 1:\n%s", code, out.String())
	}
	if code, out := check(t, "# nothing\n---\n"); code != 1 || !strings.Contains(out, "in.yaml: no Kubernetes objects") {
		t.Errorf("an empty file: exit %d, want 1:\n%s", code, out)
	}
}
