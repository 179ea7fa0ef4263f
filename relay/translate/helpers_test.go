package translate

import (
	"fmt"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
)

// Builders of Istio-shaped xDS. Test addresses: VIPs in 127.77.0.0/16,
// endpoints in 127.0.0.0/16.

func k8sHost(name, ns string) string { return name + "." + ns + ".svc.cluster.local" }

func outbound(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, host)
}

// edsCluster is an Istio outbound EDS cluster; Istiod leaves the EDS
// service name empty, so the assignment has the cluster's name.
func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		},
		LbPolicy: clusterv3.Cluster_LEAST_REQUEST,
	}
}

// istioMeta sets filter_metadata["istio"]: services [{host,name,namespace}]
// plus extra string fields (port_name, protocol).
func istioMeta(c *clusterv3.Cluster, host, name, ns string, extra ...string) *clusterv3.Cluster {
	fields := map[string]any{
		"services":              []any{map[string]any{"host": host, "name": name, "namespace": ns}},
		"default_original_port": 80,
	}
	for i := 0; i+1 < len(extra); i += 2 {
		fields[extra[i]] = extra[i+1]
	}
	s, err := structpb.NewStruct(fields)
	if err != nil {
		panic(err)
	}
	c.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{istioMetadata: s}}
	return c
}

// ep is one endpoint of a test assignment.
type ep struct {
	addr   string
	port   uint32
	weight uint32 // 0: not set
	health corev3.HealthStatus
	zone   string
	node   string
	udp    bool
}

func lbEndpoint(e ep) *endpointv3.LbEndpoint {
	sa := &corev3.SocketAddress{Address: e.addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: e.port}}
	if e.udp {
		sa.Protocol = corev3.SocketAddress_UDP
	}
	lb := &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: sa}},
		}},
		HealthStatus: e.health,
	}
	if e.weight != 0 {
		lb.LoadBalancingWeight = wrapperspb.UInt32(e.weight)
	}
	fields := map[string]any{"workload": "w;ns;w;v1;Kubernetes"}
	if e.node != "" {
		fields["node_name"] = e.node
	}
	s, _ := structpb.NewStruct(fields)
	lb.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{istioMetadata: s}}
	return lb
}

// cla groups endpoints by zone, in order of first appearance.
func cla(name string, eps ...ep) *endpointv3.ClusterLoadAssignment {
	out := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	byZone := map[string]*endpointv3.LocalityLbEndpoints{}
	for _, e := range eps {
		l := byZone[e.zone]
		if l == nil {
			l = &endpointv3.LocalityLbEndpoints{}
			if e.zone != "" {
				l.Locality = &corev3.Locality{Region: "r1", Zone: e.zone}
			}
			byZone[e.zone] = l
			out.Endpoints = append(out.Endpoints, l)
		}
		l.LbEndpoints = append(l.LbEndpoints, lbEndpoint(e))
	}
	return out
}

// tcpListener is Istio's outbound TCP listener <vip>_<port> for clusters
// (one: cluster; several: weighted_clusters).
func tcpListener(vip string, port uint32, clusters ...string) *listenerv3.Listener {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: clusters[0]}
	if len(clusters) == 1 {
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: clusters[0]}
	} else {
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, c := range clusters {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: c, Weight: 1})
		}
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	cfg, err := anypb.New(tp)
	if err != nil {
		panic(err)
	}
	return &listenerv3.Listener{
		Name: fmt.Sprintf("%s_%d", vip, port),
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: vip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.tcp_proxy",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg},
		}}}},
	}
}

// vhost is Istio's virtual host for host:port, routing everything to
// clusters (default: outbound|port||host).
func vhost(host string, port uint32, domains []string, clusters ...string) *routev3.VirtualHost {
	if len(clusters) == 0 {
		clusters = []string{outbound(port, "", host)}
	}
	action := &routev3.RouteAction{}
	if len(clusters) == 1 {
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: clusters[0]}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, c := range clusters {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: c, Weight: wrapperspb.UInt32(1)})
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	return &routev3.VirtualHost{
		Name:    fmt.Sprintf("%s:%d", host, port),
		Domains: domains,
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: action},
		}},
	}
}

// allowAny is Istio's catch-all virtual host.
func allowAny() *routev3.VirtualHost {
	return &routev3.VirtualHost{
		Name: "allow_any", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "PassthroughCluster"}}},
		}},
	}
}

func newInputs() *Inputs {
	return &Inputs{
		Clusters:  map[string]*clusterv3.Cluster{},
		Endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
		Listeners: map[string]*listenerv3.Listener{},
		Routes:    map[string]*routev3.RouteConfiguration{},
	}
}

// addEDS adds an EDS cluster and its assignment.
func (in *Inputs) addEDS(c *clusterv3.Cluster, eps ...ep) {
	in.Clusters[c.Name] = c
	in.Endpoints[c.Name] = cla(c.Name, eps...)
}

func (in *Inputs) addListener(l *listenerv3.Listener) { in.Listeners[l.Name] = l }

// endpointAddr is the i-th test endpoint address, 127.0.x.y.
func endpointAddr(i int) string { return fmt.Sprintf("127.0.%d.%d", i/250, i%250+1) }

// vipAddr is the i-th test VIP, 127.77.x.y.
func vipAddr(i int) string { return fmt.Sprintf("127.77.%d.%d", i/250, i%250+1) }

// mustService returns the translated service k.
func mustService(t testing.TB, out map[keyspace.Service]*model.Service, ns, name string) *model.Service {
	t.Helper()
	s, ok := out[keyspace.Service{Namespace: ns, Name: name}]
	if !ok {
		keys := make([]string, 0, len(out))
		for k := range out {
			keys = append(keys, k.String())
		}
		t.Fatalf("no service %s/%s; have %v", ns, name, keys)
	}
	return s
}

// encode is the stored form of every value of s, for byte comparisons.
func encode(t testing.TB, s *model.Service) []byte {
	t.Helper()
	b, err := model.Marshal(s.Spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, sl := range s.Slices {
		sb, err := model.Marshal(sl)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, sb...)
	}
	return b
}
