package translate

import (
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// istioMetadata is the filter_metadata key under which Istiod puts its
// cluster and endpoint metadata.
const istioMetadata = "istio"

// Reasons a cluster is not a service port, as reported in IgnoredCluster.
const (
	reasonNil         = "nil cluster"
	reasonCatchAll    = "Istio catch-all cluster"
	reasonInbound     = "inbound cluster"
	reasonSubset      = "subset cluster"
	reasonUnparsable  = "name is not outbound|<port>|<subset>|<hostname>"
	reasonNoNamespace = "hostname is not <name>.<namespace>.svc.<domain> and istio metadata names no service for it"
)

// clusterName is a parsed Istio outbound cluster name,
// outbound|<port>|<subset>|<hostname>.
type clusterName struct {
	port   uint32
	subset string
	host   string
}

// parseClusterName parses an outbound cluster name.
func parseClusterName(name string) (clusterName, bool) {
	rest, ok := strings.CutPrefix(name, "outbound|")
	if !ok {
		return clusterName{}, false
	}
	portText, rest, ok := strings.Cut(rest, "|")
	if !ok {
		return clusterName{}, false
	}
	subset, host, ok := strings.Cut(rest, "|")
	if !ok || host == "" || strings.Contains(host, "|") {
		return clusterName{}, false
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return clusterName{}, false
	}
	return clusterName{port: uint32(port), subset: subset, host: host}, true
}

// serviceCluster is a default outbound cluster: one port of one service.
// It holds what translation needs from the cluster, parsed once.
type serviceCluster struct {
	name     string
	port     uint32
	host     string
	key      keyspace.Service
	portName string
	// protocol is what the metadata or port name says; UNSPECIFIED lets the
	// endpoints decide.
	protocol v1.Protocol
	lb       v1.LoadBalancing
	// edsName is the assignment to read for an EDS cluster, empty otherwise.
	edsName string
	// inline is the cluster's own load_assignment for STATIC and DNS
	// clusters (nil for EDS and ORIGINAL_DST clusters).
	inline *endpointv3.ClusterLoadAssignment
}

// classifyCluster returns the service port a cluster stands for, or nil and
// the reason it is ignored.
func classifyCluster(name string, c *clusterv3.Cluster) (*serviceCluster, string) {
	if c == nil {
		return nil, reasonNil
	}
	switch {
	case name == "BlackHoleCluster" || name == "PassthroughCluster" || strings.HasPrefix(name, "InboundPassthroughCluster"):
		return nil, reasonCatchAll
	case strings.HasPrefix(name, "inbound|"):
		return nil, reasonInbound
	}
	cn, ok := parseClusterName(name)
	if !ok {
		return nil, reasonUnparsable
	}
	if cn.subset != "" {
		return nil, reasonSubset
	}
	istio := c.GetMetadata().GetFilterMetadata()[istioMetadata]
	key, ok := serviceKey(cn.host, istio)
	if !ok {
		return nil, reasonNoNamespace
	}
	sc := &serviceCluster{
		name:     name,
		port:     cn.port,
		host:     cn.host,
		key:      key,
		portName: stringField(istio, "port_name"),
		lb:       loadBalancing(c),
	}
	sc.protocol = declaredProtocol(stringField(istio, "protocol"), sc.portName)
	switch c.GetClusterDiscoveryType().(type) {
	case *clusterv3.Cluster_ClusterType:
		// A custom cluster type: no endpoints meshrelay can read.
	default: // *clusterv3.Cluster_Type, or unset, which Envoy reads as STATIC
		switch c.GetType() {
		case clusterv3.Cluster_EDS:
			sc.edsName = c.GetEdsClusterConfig().GetServiceName()
			if sc.edsName == "" {
				sc.edsName = name
			}
		case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
			sc.inline = c.GetLoadAssignment()
		}
	}
	return sc, ""
}

// serviceKey names the service of hostname: from a Kubernetes hostname
// <name>.<namespace>.svc.<domain>, else from the Istio metadata's services
// list.
func serviceKey(host string, istio *structpb.Struct) (keyspace.Service, bool) {
	parts := strings.SplitN(host, ".", 4)
	if len(parts) == 4 && parts[2] == "svc" && parts[3] != "" {
		if k := (keyspace.Service{Namespace: parts[1], Name: parts[0]}); validKey(k) {
			return k, true
		}
	}
	for _, v := range istio.GetFields()["services"].GetListValue().GetValues() {
		s := v.GetStructValue()
		if stringField(s, "host") != host {
			continue
		}
		k := keyspace.Service{Namespace: stringField(s, "namespace"), Name: stringField(s, "name")}
		if validKey(k) {
			return k, true
		}
	}
	return keyspace.Service{}, false
}

// validKey reports whether k can name etcd keys services/<ns>/<name>/.
func validKey(k keyspace.Service) bool {
	return k.Namespace != "" && k.Name != "" &&
		!strings.ContainsAny(k.Namespace, "/ ") && !strings.ContainsAny(k.Name, "/ ")
}

// stringField returns the string field name of s, "" when absent.
func stringField(s *structpb.Struct, name string) string {
	return s.GetFields()[name].GetStringValue()
}

// declaredProtocol is the protocol a port's metadata or name declares, or
// UNSPECIFIED.
func declaredProtocol(protocol, portName string) v1.Protocol {
	switch strings.ToUpper(protocol) {
	case "TCP":
		return v1.Protocol_TCP
	case "UDP":
		return v1.Protocol_UDP
	case "SCTP":
		return v1.Protocol_SCTP
	}
	prefix, _, _ := strings.Cut(portName, "-")
	if strings.EqualFold(prefix, "udp") {
		return v1.Protocol_UDP
	}
	return v1.Protocol_PROTOCOL_UNSPECIFIED
}

// loadBalancing maps the cluster's load-balancing policy: the first
// recognised load_balancing_policy extension, else lb_policy.
func loadBalancing(c *clusterv3.Cluster) v1.LoadBalancing {
	for _, p := range c.GetLoadBalancingPolicy().GetPolicies() {
		if lb := policyExtension(p.GetTypedExtensionConfig()); lb != v1.LoadBalancing_LOAD_BALANCING_UNSPECIFIED {
			return lb
		}
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_LEAST_REQUEST:
		return v1.LoadBalancing_LEAST_REQUEST
	case clusterv3.Cluster_RANDOM:
		return v1.LoadBalancing_RANDOM
	case clusterv3.Cluster_RING_HASH:
		return v1.LoadBalancing_RING_HASH
	case clusterv3.Cluster_MAGLEV:
		return v1.LoadBalancing_MAGLEV
	}
	return v1.LoadBalancing_ROUND_ROBIN
}

// policyExtension maps an envoy.extensions.load_balancing_policies.* type to
// a policy, UNSPECIFIED when not one of the five meshrelay knows.
func policyExtension(tc *corev3.TypedExtensionConfig) v1.LoadBalancing {
	url := tc.GetTypedConfig().GetTypeUrl()
	rest, ok := strings.CutPrefix(url[strings.LastIndexByte(url, '/')+1:], "envoy.extensions.load_balancing_policies.")
	if !ok {
		return v1.LoadBalancing_LOAD_BALANCING_UNSPECIFIED
	}
	policy, _, _ := strings.Cut(rest, ".")
	switch policy {
	case "round_robin":
		return v1.LoadBalancing_ROUND_ROBIN
	case "least_request":
		return v1.LoadBalancing_LEAST_REQUEST
	case "random":
		return v1.LoadBalancing_RANDOM
	case "ring_hash":
		return v1.LoadBalancing_RING_HASH
	case "maglev":
		return v1.LoadBalancing_MAGLEV
	}
	return v1.LoadBalancing_LOAD_BALANCING_UNSPECIFIED
}

// ClusterService returns the service an outbound cluster belongs to (any
// subset), as translation names it; ok is false for a cluster of no
// service. The relay uses it to subscribe EDS only for the clusters of the
// shards it leads.
func ClusterService(name string, c *clusterv3.Cluster) (keyspace.Service, bool) {
	cn, ok := parseClusterName(name)
	if !ok || strings.HasPrefix(name, "inbound|") {
		return keyspace.Service{}, false
	}
	return serviceKey(cn.host, c.GetMetadata().GetFilterMetadata()[istioMetadata])
}
