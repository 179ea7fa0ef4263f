package charttest

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Decoded is one rendered document decoded into its API type.
type Decoded struct {
	Manifest
	TypeMeta metav1.TypeMeta
	// Meta is the object's metadata.
	Meta *metav1.ObjectMeta
	// Obj is a pointer to the typed object (*appsv1.DaemonSet, ...).
	Obj any
}

// newObject returns an empty object of the API type of apiVersion/kind.
func newObject(tm metav1.TypeMeta) (any, *metav1.ObjectMeta, error) {
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Service":
		o := &corev1.Service{}
		return o, &o.ObjectMeta, nil
	case "v1/ServiceAccount":
		o := &corev1.ServiceAccount{}
		return o, &o.ObjectMeta, nil
	case "v1/ConfigMap":
		o := &corev1.ConfigMap{}
		return o, &o.ObjectMeta, nil
	case "v1/Secret":
		o := &corev1.Secret{}
		return o, &o.ObjectMeta, nil
	case "v1/Namespace":
		o := &corev1.Namespace{}
		return o, &o.ObjectMeta, nil
	case "apps/v1/StatefulSet":
		o := &appsv1.StatefulSet{}
		return o, &o.ObjectMeta, nil
	case "apps/v1/Deployment":
		o := &appsv1.Deployment{}
		return o, &o.ObjectMeta, nil
	case "apps/v1/DaemonSet":
		o := &appsv1.DaemonSet{}
		return o, &o.ObjectMeta, nil
	case "policy/v1/PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		return o, &o.ObjectMeta, nil
	case "networking.k8s.io/v1/NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		return o, &o.ObjectMeta, nil
	case "rbac.authorization.k8s.io/v1/Role":
		o := &rbacv1.Role{}
		return o, &o.ObjectMeta, nil
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		o := &rbacv1.RoleBinding{}
		return o, &o.ObjectMeta, nil
	case "monitoring.coreos.com/v1/ServiceMonitor":
		o := &ServiceMonitor{}
		return o, &o.ObjectMeta, nil
	}
	return nil, nil, fmt.Errorf("no API type known for %s %s", tm.APIVersion, tm.Kind)
}

// Decode decodes every manifest strictly: a field the API type does not
// have, a duplicate field or a kind the chart is not expected to render is
// an error.
func Decode(ms []Manifest) ([]Decoded, error) {
	out := make([]Decoded, 0, len(ms))
	for _, m := range ms {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(m.Content), &tm); err != nil {
			return nil, fmt.Errorf("decode %s: %w", m.Source, err)
		}
		obj, meta, err := newObject(tm)
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", m.Source, err)
		}
		if err := yaml.UnmarshalStrict([]byte(m.Content), obj); err != nil {
			return nil, fmt.Errorf("decode %s %s from %s: %w", tm.Kind, meta.Name, m.Source, err)
		}
		out = append(out, Decoded{Manifest: m, TypeMeta: tm, Meta: meta, Obj: obj})
	}
	return out, nil
}

// ServiceMonitor is the part of the Prometheus operator's ServiceMonitor
// the chart uses; strict decoding into it catches fields the chart should
// not set (importing the operator's module would pull in far more).
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}
