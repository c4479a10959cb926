package main

import (
	"fmt"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
)

// CheckDocuments decodes every document strictly and checks each object
// that decodes.
func CheckDocuments(docs []Document) []Problem {
	var out []Problem
	for _, d := range docs {
		obj, problems := Decode(d)
		out = append(out, problems...)
		if obj != nil {
			c := &checker{at: Problem{Source: fmt.Sprintf("%s (document %d)", d.Source, d.Index)}}
			c.object(obj)
			out = append(out, c.problems...)
		}
	}
	return out
}

// checker collects the problems of one object.
type checker struct {
	at       Problem // Source, Kind and Name of the object
	problems []Problem
}

func (c *checker) bad(field, format string, args ...any) {
	p := c.at
	p.Field, p.Msg = field, fmt.Sprintf(format, args...)
	c.problems = append(c.problems, p)
}

// object checks what the API server's validation would refuse and the
// schema does not express, then keyd's policy for pods that run keyd.
func (c *checker) object(obj runtime.Object) {
	m, err := meta.Accessor(obj)
	if err != nil {
		c.bad("metadata", "%v", err)
		return
	}
	c.at.Kind, c.at.Name = obj.GetObjectKind().GroupVersionKind().Kind, m.GetName()
	c.metadata(m, c.at.Kind == "Service")
	switch o := obj.(type) {
	case *appsv1.Deployment:
		c.deployment(o)
	case *appsv1.StatefulSet:
		c.workload("spec", o.Spec.Selector, &o.Spec.Template, true)
	case *appsv1.DaemonSet:
		c.workload("spec", o.Spec.Selector, &o.Spec.Template, true)
	case *appsv1.ReplicaSet:
		c.workload("spec", o.Spec.Selector, &o.Spec.Template, true)
	case *batchv1.Job:
		c.job("spec", &o.Spec)
	case *batchv1.CronJob:
		c.job("spec.jobTemplate.spec", &o.Spec.JobTemplate.Spec)
	case *corev1.Pod:
		c.pod("spec", &o.Spec, o.Labels, false)
	case *corev1.Service:
		c.service(o)
	case *corev1.ConfigMap:
		c.configMap(o)
	case *corev1.PersistentVolumeClaim:
		c.pvc(o)
	case *policyv1.PodDisruptionBudget:
		c.pdb(o)
	}
}

func (c *checker) metadata(m metav1.Object, dns1035 bool) {
	switch name := m.GetName(); {
	case name == "" && m.GetGenerateName() == "":
		c.bad("metadata.name", "missing")
	case name != "" && dns1035:
		c.each("metadata.name", validation.IsDNS1035Label(name))
	case name != "":
		c.each("metadata.name", validation.IsDNS1123Subdomain(name))
	}
	if ns := m.GetNamespace(); ns != "" {
		c.each("metadata.namespace", validation.IsDNS1123Label(ns))
	}
	c.labels("metadata.labels", m.GetLabels())
	for _, k := range slices.Sorted(maps.Keys(m.GetAnnotations())) {
		c.each("metadata.annotations["+k+"]", validation.IsQualifiedName(k))
	}
}

// labels checks label keys and values.
func (c *checker) labels(field string, l map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(l)) {
		c.each(field+"["+k+"]", validation.IsQualifiedName(k))
		c.each(field+"["+k+"]", validation.IsValidLabelValue(l[k]))
	}
}

// each reports the messages of a k8s.io validation function.
func (c *checker) each(field string, errs []string) {
	for _, e := range errs {
		c.bad(field, "%s", e)
	}
}

func (c *checker) deployment(d *appsv1.Deployment) {
	switch s := d.Spec.Strategy; s.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if s.RollingUpdate != nil {
			c.bad("spec.strategy.rollingUpdate", "may not be set with type Recreate")
		}
	case "", appsv1.RollingUpdateDeploymentStrategyType:
	default:
		c.bad("spec.strategy.type", "must be Recreate or RollingUpdate, got %q", s.Type)
	}
	c.workload("spec", d.Spec.Selector, &d.Spec.Template, true)
}

// workload checks a controller's selector against its pod template.
func (c *checker) workload(field string, sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, longRunning bool) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		c.bad(field+".selector", "missing: a controller must select its pods")
	} else {
		c.selects(field+".selector", sel, t.Labels)
	}
	c.labels(field+".template.metadata.labels", t.Labels)
	c.pod(field+".template.spec", &t.Spec, t.Labels, longRunning)
}

// selects checks that sel matches labels (a controller whose selector does
// not match its template is refused by the API server).
func (c *checker) selects(field string, sel *metav1.LabelSelector, labels map[string]string) {
	c.labels(field+".matchLabels", sel.MatchLabels)
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		c.bad(field, "%v", err)
		return
	}
	if !s.Matches(labelSet(labels)) {
		c.bad(field, "does not match the pod template's labels %v", labels)
	}
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

func (c *checker) job(field string, s *batchv1.JobSpec) {
	if s.Selector != nil {
		c.selects(field+".selector", s.Selector, s.Template.Labels)
	}
	c.labels(field+".template.metadata.labels", s.Template.Labels)
	switch s.Template.Spec.RestartPolicy {
	case corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure:
	default:
		c.bad(field+".template.spec.restartPolicy", "must be Never or OnFailure for a Job, got %q", s.Template.Spec.RestartPolicy)
	}
	c.pod(field+".template.spec", &s.Template.Spec, s.Template.Labels, false)
}

func (c *checker) service(s *corev1.Service) {
	if len(s.Spec.Ports) == 0 && s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP != corev1.ClusterIPNone {
		c.bad("spec.ports", "missing: a Service needs at least one port")
	}
	seen := map[string]bool{}
	for i, p := range s.Spec.Ports {
		f := fmt.Sprintf("spec.ports[%d]", i)
		if len(s.Spec.Ports) > 1 && p.Name == "" {
			c.bad(f+".name", "required when a Service has several ports")
		}
		if p.Name != "" {
			c.each(f+".name", validation.IsDNS1123Label(p.Name))
			if seen[p.Name] {
				c.bad(f+".name", "duplicate port name %q", p.Name)
			}
			seen[p.Name] = true
		}
		c.each(f+".port", validation.IsValidPortNum(int(p.Port)))
		if p.TargetPort.StrVal != "" {
			c.each(f+".targetPort", validation.IsValidPortName(p.TargetPort.StrVal))
		}
	}
	c.labels("spec.selector", s.Spec.Selector)
}

func (c *checker) configMap(cm *corev1.ConfigMap) {
	for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
		c.each("data["+k+"]", validation.IsConfigMapKey(k))
		if looksSecret(k) && cm.Data[k] != "" {
			c.bad("data["+k+"]", "looks like a secret: keep it in a Secret and reference it (valueFrom.secretKeyRef or a mounted file)")
		}
	}
}

func (c *checker) pvc(p *corev1.PersistentVolumeClaim) {
	if len(p.Spec.AccessModes) == 0 {
		c.bad("spec.accessModes", "missing")
	}
	if _, ok := p.Spec.Resources.Requests[corev1.ResourceStorage]; !ok && p.Spec.DataSource == nil {
		c.bad("spec.resources.requests.storage", "missing")
	}
}

func (c *checker) pdb(p *policyv1.PodDisruptionBudget) {
	if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
		c.bad("spec", "set exactly one of minAvailable and maxUnavailable")
	}
	if p.Spec.Selector == nil {
		c.bad("spec.selector", "missing: the budget would cover no pod")
	}
}
