package main

import (
	"encoding/json"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	resourcev1 "k8s.io/api/resource/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8sjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
)

// scheme holds the stable (GA) built-in API groups of the Kubernetes
// version of k8s.io/api: a kind only a beta or removed group has (e.g.
// policy/v1beta1) is refused like any unknown kind.
var scheme = newScheme()

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		admissionregistrationv1.AddToScheme, appsv1.AddToScheme, autoscalingv1.AddToScheme,
		autoscalingv2.AddToScheme, batchv1.AddToScheme, certificatesv1.AddToScheme,
		coordinationv1.AddToScheme, corev1.AddToScheme, discoveryv1.AddToScheme,
		eventsv1.AddToScheme, flowcontrolv1.AddToScheme, networkingv1.AddToScheme,
		nodev1.AddToScheme, policyv1.AddToScheme, rbacv1.AddToScheme, resourcev1.AddToScheme,
		schedulingv1.AddToScheme, storagev1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err) // the k8s.io/api registrations are static
		}
	}
	return s
}

// strict decodes like the API server with fieldValidation=Strict: unknown
// and duplicated fields are errors.
var strict = k8sjson.NewSerializerWithOptions(k8sjson.DefaultMetaFactory, scheme, scheme, k8sjson.SerializerOptions{Strict: true})

// header is what names an object in a problem, read before decoding.
type header struct {
	APIVersion any `json:"apiVersion"`
	Kind       any `json:"kind"`
	Metadata   struct {
		Name any `json:"name"`
	} `json:"metadata"`
}

// Decode turns one document into its typed object. Problems name the
// document; obj is nil when it cannot be decoded at all.
func Decode(d Document) (obj runtime.Object, problems []Problem) {
	p := Problem{Source: fmt.Sprintf("%s (document %d)", d.Source, d.Index)}
	if d.Err != nil {
		p.Msg = "not valid YAML: " + d.Err.Error()
		return nil, []Problem{p}
	}
	var h header
	if err := json.Unmarshal(d.JSON, &h); err != nil {
		p.Msg = "not a Kubernetes object (a mapping with apiVersion, kind and metadata): " + err.Error()
		return nil, []Problem{p}
	}
	apiVersion, _ := h.APIVersion.(string)
	kind, _ := h.Kind.(string)
	p.Kind, p.Name = kind, fmt.Sprint(orEmpty(h.Metadata.Name))
	switch {
	case apiVersion == "" && kind == "":
		p.Field, p.Msg = "apiVersion, kind", "missing: every object needs both"
		return nil, []Problem{p}
	case apiVersion == "":
		p.Field, p.Msg = "apiVersion", "missing"
		return nil, []Problem{p}
	case kind == "":
		p.Field, p.Msg = "kind", "missing"
		return nil, []Problem{p}
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		p.Field, p.Msg = "apiVersion", err.Error()
		return nil, []Problem{p}
	}
	gvk := gv.WithKind(kind)
	if !scheme.Recognizes(gvk) {
		p.Field, p.Msg = "kind", unknownKind(gvk)
		return nil, []Problem{p}
	}
	obj, _, err = strict.Decode(d.JSON, nil, nil)
	if se, ok := runtime.AsStrictDecodingError(err); ok {
		for _, e := range se.Errors() {
			q := p
			q.Msg = e.Error()
			problems = append(problems, q)
		}
		return obj, problems
	}
	if err != nil {
		p.Msg = strings.TrimPrefix(err.Error(), "json: ")
		return nil, []Problem{p}
	}
	return obj, nil
}

// unknownKind says why gvk is refused, naming the versions that do have
// the kind when there are some.
func unknownKind(gvk schema.GroupVersionKind) string {
	var known []string
	for k := range scheme.AllKnownTypes() {
		if k.Kind == gvk.Kind && k.Version != runtime.APIVersionInternal {
			known = append(known, k.GroupVersion().String())
		}
	}
	if len(known) > 0 {
		return fmt.Sprintf("%s is not served in %s; use %s", gvk.Kind, gvk.GroupVersion(), strings.Join(known, " or "))
	}
	return fmt.Sprintf("unknown kind %s in %s (not a stable built-in Kubernetes kind)", gvk.Kind, gvk.GroupVersion())
}

func orEmpty(v any) any {
	if v == nil {
		return ""
	}
	return v
}
