package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

const (
	base  = "../../deploy/k8s/base"
	local = "../../deploy/k8s/overlays/local"
)

// TestDeployK8sPasses: keyd's own manifests, as `make k8s-check` runs it.
func TestDeployK8sPasses(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-kustomize", base, "-kustomize", local}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
}

// TestFilesAndDirsInAnyOrder: a file before -kustomize is still a file,
// and the flag after it still a flag.
func TestFilesAndDirsInAnyOrder(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"testdata/keyd-deployment.yaml", "-kustomize", local}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "5 objects valid") {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
}

// built is one kustomize build, decoded.
type built struct {
	t       *testing.T
	objects []runtime.Object
}

func build(t *testing.T, dir string) *built {
	t.Helper()
	docs, err := BuildKustomization(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &built{t: t}
	for _, d := range docs {
		obj, problems := Decode(d)
		if len(problems) > 0 || obj == nil {
			t.Fatalf("%s: %v", dir, problems)
		}
		b.objects = append(b.objects, obj)
	}
	return b
}

// of returns the objects of type T.
func of[T runtime.Object](b *built) []T {
	var out []T
	for _, o := range b.objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func one[T runtime.Object](b *built, what string) T {
	b.t.Helper()
	all := of[T](b)
	if len(all) != 1 {
		b.t.Fatalf("%d %s, want 1", len(all), what)
	}
	return all[0]
}

func selects(t *testing.T, what string, sel *metav1.LabelSelector, podLabels map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || !s.Matches(labels.Set(podLabels)) {
		t.Errorf("%s does not select keyd's pods (%v): %v", what, podLabels, err)
	}
}

// configMaps checks that every ConfigMap the pod spec reads is in the
// build, and returns their merged data.
func (b *built) configMaps(spec *corev1.PodSpec) map[string]string {
	data := map[string]string{}
	for _, c := range spec.Containers {
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef == nil {
				continue
			}
			i := slices.IndexFunc(of[*corev1.ConfigMap](b), func(cm *corev1.ConfigMap) bool { return cm.Name == ef.ConfigMapRef.Name })
			if i < 0 {
				b.t.Errorf("container %s reads ConfigMap %s, which the build lacks", c.Name, ef.ConfigMapRef.Name)
				continue
			}
			for k, v := range of[*corev1.ConfigMap](b)[i].Data {
				data[k] = v
			}
		}
	}
	return data
}

func noSecrets(t *testing.T, b *built) {
	t.Helper()
	if s := of[*corev1.Secret](b); len(s) > 0 {
		t.Errorf("the manifests hold %d Secret(s): secrets are referenced, never shipped", len(s))
	}
}

func TestDeployK8sBase(t *testing.T) {
	b := build(t, base)
	noSecrets(t, b)
	d := one[*appsv1.Deployment](b, "Deployments")
	pod := &d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	if len(pod.TopologySpreadConstraints) == 0 {
		t.Error("no topologySpreadConstraints: both replicas may land on one node")
	}
	if c := pod.Containers[0]; c.StartupProbe == nil {
		t.Error("no startupProbe: a slow first Vault login would be killed by the liveness probe")
	}
	cfg := b.configMaps(pod)
	for k, want := range map[string]string{"KEYD_BACKEND": "vault", "KEYD_VAULT_AUTH": "approle", "KEYD_VAULT_SECRET_ID_FILE": "/etc/keyd/approle/secret-id"} {
		if cfg[k] != want {
			t.Errorf("%s = %q, want %q", k, cfg[k], want)
		}
	}
	// The secret ID: a file from the Secret, 0400, where KEYD_VAULT_SECRET_ID_FILE points.
	c := pod.Containers[0]
	m := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return strings.HasPrefix(cfg["KEYD_VAULT_SECRET_ID_FILE"], m.MountPath+"/")
	})
	if m < 0 {
		t.Fatalf("nothing is mounted at %s", cfg["KEYD_VAULT_SECRET_ID_FILE"])
	}
	v := pod.Volumes[slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[m].Name })]
	if v.Secret == nil || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 || c.VolumeMounts[m].SubPath != "" {
		t.Errorf("the secret ID is not a Secret's file of mode 0400 (without subPath, so a new secret ID reaches the pod): %+v", v)
	}
	if pod.SecurityContext.FSGroup == nil || *pod.SecurityContext.FSGroup != 65532 {
		t.Error("no fsGroup 65532: uid 65532 cannot read the 0400 secret file")
	}
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "KEYD_VAULT_ROLE_ID" }); i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef == nil {
		t.Error("KEYD_VAULT_ROLE_ID does not come from a Secret")
	}

	svc := one[*corev1.Service](b, "Services")
	if len(svc.Spec.Selector) == 0 {
		t.Fatal("the Service selects nothing")
	}
	selects(t, "the Service", &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, d.Spec.Template.Labels)
	for _, p := range svc.Spec.Ports {
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal }) {
			t.Errorf("the Service's targetPort %s is no container port of keyd", p.TargetPort.String())
		}
	}
	pdb := one[*policyv1.PodDisruptionBudget](b, "PodDisruptionBudgets")
	selects(t, "the PodDisruptionBudget", pdb.Spec.Selector, d.Spec.Template.Labels)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable %v, want 1", pdb.Spec.MinAvailable)
	}

	job := one[*batchv1.Job](b, "Jobs")
	jc := job.Spec.Template.Spec.Containers[0]
	if !strings.HasPrefix(jc.Image, "keyd-tools:") || !slices.Equal(jc.Args, []string{"bootstrap", "--approle"}) {
		t.Errorf("the Job runs %s %v, want keyd-tools and bootstrap --approle", jc.Image, jc.Args)
	}
	jcfg := b.configMaps(&job.Spec.Template.Spec)
	for _, k := range []string{"VAULT_ADDR", "KEYD_ALGORITHM", "KEYD_VAULT_MOUNT", "KEYD_VAULT_KEY", "KEYD_VAULT_KV_MOUNT"} {
		if jcfg[k] == "" || jcfg[k] != cfg[k] {
			t.Errorf("%s: the Job reads %q, keyd %q: bootstrap must create what keyd uses", k, jcfg[k], cfg[k])
		}
	}
	if i := slices.IndexFunc(jc.Env, func(e corev1.EnvVar) bool { return e.Name == "VAULT_TOKEN" }); i < 0 || jc.Env[i].ValueFrom == nil || jc.Env[i].ValueFrom.SecretKeyRef == nil {
		t.Error("the Job's VAULT_TOKEN does not come from a Secret")
	}
}

func TestDeployK8sLocalOverlay(t *testing.T) {
	b := build(t, local)
	noSecrets(t, b)
	d := one[*appsv1.Deployment](b, "Deployments")
	pod := &d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("replicas %v strategy %s, want 1 and Recreate", d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	if n := len(of[*batchv1.Job](b)) + len(of[*policyv1.PodDisruptionBudget](b)); n != 0 {
		t.Errorf("%d Job/PodDisruptionBudget objects, want none (no Vault; one replica)", n)
	}
	cfg := b.configMaps(pod)
	if cfg["KEYD_BACKEND"] != "local" {
		t.Errorf("KEYD_BACKEND = %q, want local", cfg["KEYD_BACKEND"])
	}
	for k := range cfg {
		if strings.Contains(k, "VAULT") {
			t.Errorf("the local overlay still sets %s", k)
		}
	}
	c := pod.Containers[0]
	for _, e := range c.Env {
		if strings.Contains(e.Name, "VAULT") {
			t.Errorf("the local overlay still sets %s", e.Name)
		}
	}
	if len(pod.Volumes) != 1 || pod.Volumes[0].PersistentVolumeClaim == nil {
		t.Fatalf("volumes %+v, want the data PVC alone", pod.Volumes)
	}
	claim := pod.Volumes[0].PersistentVolumeClaim.ClaimName
	if !slices.ContainsFunc(of[*corev1.PersistentVolumeClaim](b), func(p *corev1.PersistentVolumeClaim) bool { return p.Name == claim }) {
		t.Errorf("the PVC %s is not in the build", claim)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != cfg["KEYD_DATA_DIR"] {
		t.Errorf("mounts %+v, want the PVC at KEYD_DATA_DIR %q", c.VolumeMounts, cfg["KEYD_DATA_DIR"])
	}
	if pod.SecurityContext.FSGroup == nil || *pod.SecurityContext.FSGroup != 65532 {
		t.Error("no fsGroup 65532: keyd (uid 65532) could not write a fresh volume")
	}
}
