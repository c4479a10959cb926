package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// keyd's policy for the pods that run it (an image named keyd or
// keyd-tools, from any registry, with any tag): what docs/design.md's
// "Kubernetes and Tutor" promises and the API schema cannot require.

// runsKeyd: some container of s runs a keyd image.
func runsKeyd(s *corev1.PodSpec) bool {
	return slices.ContainsFunc(append(slices.Clip(s.InitContainers), s.Containers...), func(c corev1.Container) bool { return isKeydImage(c.Image) })
}

// isKeydImage: the image's repository is keyd or keyd-tools.
func isKeydImage(image string) bool {
	repo := image
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	repo = repo[strings.LastIndex(repo, "/")+1:]
	return repo == "keyd" || repo == "keyd-tools"
}

// secretName: an environment or ConfigMap key that holds a credential by
// its name (KEYD_ADMIN_TOKEN, VAULT_TOKEN, ..._SECRET_ID, ..._PASSWORD). A
// ..._FILE key names a file, not the secret.
var secretName = regexp.MustCompile(`(^|_)(TOKEN|SECRET|SECRET_ID|PASSWORD|PRIVATE_KEY)$`)

func looksSecret(key string) bool {
	k := strings.ToUpper(key)
	return k == key && secretName.MatchString(k) && !strings.HasSuffix(k, "_FILE")
}

// keydPod: no service-account token, non-root, a seccomp profile, and each
// container hardened, with resources, and (serving pods) the probes.
func (c *checker) keydPod(field string, s *corev1.PodSpec, longRunning bool) {
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		c.bad(field+".automountServiceAccountToken", "must be false: keyd never calls the Kubernetes API")
	}
	psc := s.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	for i := range s.Volumes {
		c.secretVolume(fmt.Sprintf("%s.volumes[%d]", field, i), &s.Volumes[i])
	}
	for _, list := range []struct {
		name string
		cs   []corev1.Container
	}{{"initContainers", s.InitContainers}, {"containers", s.Containers}} {
		for i := range list.cs {
			f := fmt.Sprintf("%s.%s[%d]", field, list.name, i)
			c.keydContainer(f, &list.cs[i], psc)
			if longRunning && list.name == "containers" && isKeydImage(list.cs[i].Image) {
				c.keydProbes(f, &list.cs[i])
			}
		}
	}
}

func (c *checker) keydContainer(f string, ct *corev1.Container, psc *corev1.PodSecurityContext) {
	c.keydSecurity(f, ct, psc)
	for _, r := range []string{"requests.cpu", "requests.memory", "limits.memory"} {
		list := ct.Resources.Requests
		if strings.HasPrefix(r, "limits.") {
			list = ct.Resources.Limits
		}
		if _, ok := list[corev1.ResourceName(strings.SplitN(r, ".", 2)[1])]; !ok {
			c.bad(f+".resources."+r, "missing")
		}
	}
	for i, e := range ct.Env {
		if e.Value != "" && looksSecret(e.Name) {
			c.bad(fmt.Sprintf("%s.env[%d]", f, i), "%s holds a secret by value: reference a Secret (valueFrom.secretKeyRef or a mounted file)", e.Name)
		}
	}
}

// keydSecurity: non-root, read-only, no privilege, no capability, seccomp.
func (c *checker) keydSecurity(f string, ct *corev1.Container, psc *corev1.PodSecurityContext) {
	sc := ct.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	c.keydUser(f, sc, psc)
	c.keydPrivileges(f, sc)
	sp := first(sc.SeccompProfile, psc.SeccompProfile)
	if sp == nil || sp.Type == corev1.SeccompProfileTypeUnconfined {
		c.bad(f+".securityContext.seccompProfile", "must be RuntimeDefault or Localhost (here or in the pod's securityContext)")
	}
}

// keydUser: runAsNonRoot true and runAsUser not 0, in the container's or
// the pod's securityContext.
func (c *checker) keydUser(f string, sc *corev1.SecurityContext, psc *corev1.PodSecurityContext) {
	nonRoot := first(sc.RunAsNonRoot, psc.RunAsNonRoot)
	user := first(sc.RunAsUser, psc.RunAsUser)
	switch {
	case nonRoot == nil || !*nonRoot:
		c.bad(f+".securityContext.runAsNonRoot", "must be true (here or in the pod's securityContext)")
	case user != nil && *user == 0:
		c.bad(f+".securityContext.runAsUser", "must not be 0 (keyd's images run as 65532)")
	}
}

// keydPrivileges: a read-only root filesystem, no privilege escalation, not
// privileged, every capability dropped and none added.
func (c *checker) keydPrivileges(f string, sc *corev1.SecurityContext) {
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.bad(f+".securityContext.readOnlyRootFilesystem", "must be true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.bad(f+".securityContext.allowPrivilegeEscalation", "must be false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		c.bad(f+".securityContext.privileged", "must not be true")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		c.bad(f+".securityContext.capabilities", "must drop ALL and add none")
	}
}

// keydProbes: readiness on /readyz, liveness on /healthz (docs/design.md "Kubernetes and Tutor").
func (c *checker) keydProbes(f string, ct *corev1.Container) {
	want := []struct {
		name, path string
		probe      *corev1.Probe
	}{{"readinessProbe", "/readyz", ct.ReadinessProbe}, {"livenessProbe", "/healthz", ct.LivenessProbe}}
	for _, w := range want {
		if w.probe == nil || w.probe.HTTPGet == nil || w.probe.HTTPGet.Path != w.path {
			c.bad(f+"."+w.name, "must be an httpGet of %s", w.path)
		}
	}
}

// secretVolume: a Secret mounted as files is readable by its owner only
// (no bits for others, no group write); the default 0644 is not.
func (c *checker) secretVolume(f string, v *corev1.Volume) {
	s := v.Secret
	if s == nil {
		return
	}
	if s.DefaultMode == nil || *s.DefaultMode&0o037 != 0 {
		c.bad(f+".secret.defaultMode", "must be 0400 (or 0440): a secret file readable by others is not kept secret")
	}
	for i, it := range s.Items {
		if it.Mode != nil && *it.Mode&0o037 != 0 {
			c.bad(fmt.Sprintf("%s.secret.items[%d].mode", f, i), "must be 0400 (or 0440)")
		}
	}
}

// first is the container's setting, else the pod's.
func first[T any](container, pod *T) *T {
	if container != nil {
		return container
	}
	return pod
}
