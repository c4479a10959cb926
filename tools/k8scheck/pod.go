package main

import (
	"fmt"
	"path"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// pod checks a pod spec as the API server would, then keyd's policy when
// it runs keyd. longRunning: a Deployment's, StatefulSet's, DaemonSet's or
// ReplicaSet's pods (restartPolicy Always, probes).
func (c *checker) pod(field string, s *corev1.PodSpec, labels map[string]string, longRunning bool) {
	if longRunning && s.RestartPolicy != "" && s.RestartPolicy != corev1.RestartPolicyAlways {
		c.bad(field+".restartPolicy", "must be Always for a %s, got %q", c.at.Kind, s.RestartPolicy)
	}
	if len(s.Containers) == 0 {
		c.bad(field+".containers", "missing: a pod needs at least one container")
	}
	volumes := c.volumes(field, s.Volumes)
	names := map[string]bool{}
	for _, list := range []struct {
		name string
		cs   []corev1.Container
	}{{"initContainers", s.InitContainers}, {"containers", s.Containers}} {
		for i := range list.cs {
			ct := &list.cs[i]
			f := fmt.Sprintf("%s.%s[%d]", field, list.name, i)
			if names[ct.Name] {
				c.bad(f+".name", "duplicate container name %q", ct.Name)
			}
			names[ct.Name] = true
			c.container(f, ct, volumes)
		}
	}
	for i, tsc := range s.TopologySpreadConstraints {
		if tsc.LabelSelector != nil {
			c.selects(fmt.Sprintf("%s.topologySpreadConstraints[%d].labelSelector", field, i), tsc.LabelSelector, labels)
		}
	}
	if runsKeyd(s) {
		c.keydPod(field, s, longRunning)
	}
}

// volumes checks the pod's volumes and returns them by name.
func (c *checker) volumes(field string, vs []corev1.Volume) map[string]*corev1.Volume {
	byName := map[string]*corev1.Volume{}
	for i := range vs {
		v := &vs[i]
		f := fmt.Sprintf("%s.volumes[%d]", field, i)
		c.each(f+".name", validation.IsDNS1123Label(v.Name))
		if byName[v.Name] != nil {
			c.bad(f+".name", "duplicate volume name %q", v.Name)
		}
		byName[v.Name] = v
		if n := setFields(v.VolumeSource); n != 1 {
			c.bad(f, "must have exactly one volume source (secret, configMap, emptyDir, persistentVolumeClaim, ...), has %d", n)
		}
	}
	return byName
}

// setFields counts the non-nil pointer fields of a struct (the one-of
// members of a union such as VolumeSource or ProbeHandler).
func setFields(v any) int {
	rv, n := reflect.ValueOf(v), 0
	for i := 0; i < rv.NumField(); i++ {
		if f := rv.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

func (c *checker) container(f string, ct *corev1.Container, volumes map[string]*corev1.Volume) {
	c.each(f+".name", validation.IsDNS1123Label(ct.Name))
	if strings.TrimSpace(ct.Image) == "" {
		c.bad(f+".image", "missing")
	}
	ports := map[string]bool{}
	for i, p := range ct.Ports {
		pf := fmt.Sprintf("%s.ports[%d]", f, i)
		c.each(pf+".containerPort", validation.IsValidPortNum(int(p.ContainerPort)))
		if p.Name != "" {
			c.each(pf+".name", validation.IsValidPortName(p.Name))
			if ports[p.Name] {
				c.bad(pf+".name", "duplicate port name %q", p.Name)
			}
			ports[p.Name] = true
		}
	}
	for i, e := range ct.Env {
		ef := fmt.Sprintf("%s.env[%d]", f, i)
		c.each(ef+".name", validation.IsEnvVarName(e.Name))
		if e.Value != "" && e.ValueFrom != nil {
			c.bad(ef, "value and valueFrom may not both be set")
		}
	}
	mounts := map[string]bool{}
	for i, m := range ct.VolumeMounts {
		mf := fmt.Sprintf("%s.volumeMounts[%d]", f, i)
		if volumes[m.Name] == nil {
			c.bad(mf+".name", "no volume named %q in the pod", m.Name)
		}
		if !path.IsAbs(m.MountPath) {
			c.bad(mf+".mountPath", "must be an absolute path, got %q", m.MountPath)
		}
		if mounts[m.MountPath] {
			c.bad(mf+".mountPath", "%s is mounted twice", m.MountPath)
		}
		mounts[m.MountPath] = true
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
	}{{"startupProbe", ct.StartupProbe}, {"livenessProbe", ct.LivenessProbe}, {"readinessProbe", ct.ReadinessProbe}} {
		if p.probe != nil {
			c.probe(f+"."+p.name, p.probe, ports)
		}
	}
}

// probe checks one probe: one handler, a named port that exists.
func (c *checker) probe(f string, p *corev1.Probe, ports map[string]bool) {
	if n := setFields(p.ProbeHandler); n != 1 {
		c.bad(f, "must have exactly one handler (httpGet, tcpSocket, grpc or exec), has %d", n)
	}
	var port *intstr.IntOrString
	switch {
	case p.HTTPGet != nil:
		port = &p.HTTPGet.Port
		if !strings.HasPrefix(p.HTTPGet.Path, "/") {
			c.bad(f+".httpGet.path", "must start with /, got %q", p.HTTPGet.Path)
		}
	case p.TCPSocket != nil:
		port = &p.TCPSocket.Port
	}
	if port == nil {
		return
	}
	if port.Type == intstr.String && !ports[port.StrVal] {
		c.bad(f+".port", "no container port named %q", port.StrVal)
	}
	if port.Type == intstr.Int {
		c.each(f+".port", validation.IsValidPortNum(port.IntValue()))
	}
}
