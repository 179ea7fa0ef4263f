package sotw

import (
	"fmt"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Defaults NodeFromEnv uses for unset environment variables.
const (
	DefaultPodIP        = "127.0.0.1"
	DefaultPodName      = "meshrelay-relay"
	DefaultPodNamespace = "istio-system"
	// DefaultIstioVersion is the ISTIO_VERSION metadata sent when the
	// environment does not name one: the Istio release this client was
	// written against. Istiod gates some features on it.
	DefaultIstioVersion = "1.28.0"
	// DefaultClusterID is Istio's default CLUSTER_ID.
	DefaultClusterID = "Kubernetes"
)

// NodeFromEnv builds the identity the relay presents to Istiod, as a sidecar
// proxy of the relay's own pod:
//
//	id:       sidecar~<POD_IP>~<POD_NAME>.<POD_NAMESPACE>~<POD_NAMESPACE>.svc.cluster.local
//	metadata: ISTIO_VERSION, NAMESPACE, CLUSTER_ID, LABELS, NAME, INSTANCE_IPS
//	          (+ SERVICE_ACCOUNT when set, which Istiod checks on 15012)
//
// It reads POD_IP (default 127.0.0.1), POD_NAME (default meshrelay-relay),
// POD_NAMESPACE (default istio-system), ISTIO_VERSION (default
// DefaultIstioVersion) and SERVICE_ACCOUNT through getenv (os.Getenv in
// production). An empty clusterID means DefaultClusterID.
//
// It does not fail: New checks the result with ValidateNode, which rejects a
// POD_IP that is not an IP address.
func NodeFromEnv(getenv func(string) string, clusterID string) *corev3.Node {
	get := func(key, def string) string {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			return v
		}
		return def
	}
	ip := get("POD_IP", DefaultPodIP)
	pod := get("POD_NAME", DefaultPodName)
	ns := get("POD_NAMESPACE", DefaultPodNamespace)
	if clusterID == "" {
		clusterID = DefaultClusterID
	}
	md := map[string]*structpb.Value{
		"ISTIO_VERSION": structpb.NewStringValue(get("ISTIO_VERSION", DefaultIstioVersion)),
		"NAMESPACE":     structpb.NewStringValue(ns),
		"CLUSTER_ID":    structpb.NewStringValue(clusterID),
		"NAME":          structpb.NewStringValue(pod),
		"INSTANCE_IPS":  structpb.NewStringValue(ip),
		"LABELS": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"app": structpb.NewStringValue(DefaultPodName),
		}}),
	}
	if sa := get("SERVICE_ACCOUNT", ""); sa != "" {
		md["SERVICE_ACCOUNT"] = structpb.NewStringValue(sa)
	}
	return &corev3.Node{
		Id:            fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", ip, pod, ns, ns),
		Cluster:       pod + "." + ns,
		Metadata:      &structpb.Struct{Fields: md},
		UserAgentName: "meshrelay",
	}
}

// ValidateNode checks that n has the id shape Istiod accepts:
// <type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local, with a valid IP.
func ValidateNode(n *corev3.Node) error {
	if n == nil {
		return fmt.Errorf("node: missing")
	}
	parts := strings.Split(n.GetId(), "~")
	if len(parts) != 4 {
		return fmt.Errorf("node id %q: want <type>~<ip>~<pod>.<namespace>~<domain>", n.GetId())
	}
	if parts[0] == "" {
		return fmt.Errorf("node id %q: empty proxy type", n.GetId())
	}
	if _, err := netip.ParseAddr(parts[1]); err != nil {
		return fmt.Errorf("node id %q: %q is not an IP address", n.GetId(), parts[1])
	}
	if pod, ns, ok := strings.Cut(parts[2], "."); !ok || pod == "" || ns == "" {
		return fmt.Errorf("node id %q: %q is not <pod>.<namespace>", n.GetId(), parts[2])
	}
	if parts[3] == "" {
		return fmt.Errorf("node id %q: empty domain", n.GetId())
	}
	return nil
}
