package translate

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

func TestServiceNaming(t *testing.T) {
	in := newInputs()
	// Kubernetes hostname, any domain.
	in.addEDS(edsCluster(outbound(9080, "", "reviews.bookinfo.svc.cluster.local")), ep{addr: "127.0.0.1", port: 9080})
	in.addEDS(edsCluster(outbound(80, "", "web.shop.svc.corp.example")))
	// ServiceEntry host named by the Istio metadata.
	in.addEDS(istioMeta(edsCluster(outbound(443, "", "api.example.com")), "api.example.com", "external-api", "egress"))
	// ServiceEntry host the metadata does not name (other host): skipped.
	in.addEDS(istioMeta(edsCluster(outbound(443, "", "db.example.com")), "other.example.com", "x", "y"))
	// No metadata at all: skipped.
	in.addEDS(edsCluster(outbound(443, "", "nometa.example.com")))
	// Looks Kubernetes-ish but has no domain: falls back to (absent) metadata.
	in.addEDS(edsCluster(outbound(80, "", "a.b.svc")))

	out, rep := Translate(in)
	if len(out) != 3 || rep.Services != 3 {
		t.Fatalf("got %d services (report %d), want 3", len(out), rep.Services)
	}
	if s := mustService(t, out, "bookinfo", "reviews"); s.Spec.Hostname != "reviews.bookinfo.svc.cluster.local" {
		t.Errorf("hostname %q", s.Spec.Hostname)
	}
	mustService(t, out, "shop", "web")
	if s := mustService(t, out, "egress", "external-api"); s.Spec.Hostname != "api.example.com" || s.Spec.Ports[0].Port != 443 {
		t.Errorf("service entry: %v", s.Spec)
	}
	wantIgnored := []IgnoredCluster{ // sorted by name
		{outbound(443, "", "db.example.com"), reasonNoNamespace},
		{outbound(443, "", "nometa.example.com"), reasonNoNamespace},
		{outbound(80, "", "a.b.svc"), reasonNoNamespace},
	}
	if rep.IgnoredClusters != 3 || !slices.Equal(rep.Ignored, wantIgnored) {
		t.Errorf("ignored %d %v, want %v", rep.IgnoredClusters, rep.Ignored, wantIgnored)
	}
}

func TestIgnoredClusters(t *testing.T) {
	host := k8sHost("reviews", "default")
	in := newInputs()
	in.addEDS(edsCluster(outbound(9080, "", host)), ep{addr: "127.0.0.1", port: 9080})
	ignored := map[string]string{
		outbound(9080, "v1", host): reasonSubset,
		"inbound|9080||":           reasonInbound,
		"inbound|9080|http|reviews.default.svc.cluster.local": reasonInbound,
		"BlackHoleCluster":                                    reasonCatchAll,
		"PassthroughCluster":                                  reasonCatchAll,
		"InboundPassthroughCluster":                           reasonCatchAll,
		"InboundPassthroughClusterIpv4":                       reasonCatchAll,
		"outbound|http||" + host:                              reasonUnparsable,
		"outbound|0||" + host:                                 reasonUnparsable,
		"outbound|70000||" + host:                             reasonUnparsable,
		"outbound|80||":                                       reasonUnparsable,
		"outbound|80|" + host:                                 reasonUnparsable,
		"outbound_.9080_._.reviews.default.svc.cluster.local": reasonUnparsable,
		"prometheus_stats":                                    reasonUnparsable,
		"outbound|80||a|b":                                    reasonUnparsable,
	}
	for name := range ignored {
		in.Clusters[name] = edsCluster(name)
	}
	in.Clusters["outbound|81||"+host] = nil
	ignored["outbound|81||"+host] = reasonNil

	out, rep := Translate(in)
	if len(out) != 1 {
		t.Fatalf("got %d services, want 1", len(out))
	}
	if s := mustService(t, out, "default", "reviews"); len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != 9080 {
		t.Fatalf("ports %v", s.Spec.Ports)
	}
	if rep.IgnoredClusters != len(ignored) {
		t.Fatalf("IgnoredClusters = %d, want %d", rep.IgnoredClusters, len(ignored))
	}
	if len(rep.Ignored) != MaxReportItems {
		t.Fatalf("report lists %d ignored clusters, want the first %d", len(rep.Ignored), MaxReportItems)
	}
	if v := rep.LogValue().String(); !strings.Contains(v, fmt.Sprintf("ignored_clusters=%d", len(ignored))) || !strings.Contains(v, "BlackHoleCluster ("+reasonCatchAll+")") {
		t.Errorf("LogValue %s", v)
	}
	if out, rep := Translate(nil); len(out) != 0 || rep.Services != 0 {
		t.Errorf("Translate(nil) = %v, %+v", out, rep)
	}
	for i, ic := range rep.Ignored {
		if ignored[ic.Name] != ic.Reason {
			t.Errorf("%s: reason %q, want %q", ic.Name, ic.Reason, ignored[ic.Name])
		}
		if i > 0 && rep.Ignored[i-1].Name >= ic.Name {
			t.Errorf("ignored clusters not sorted: %q before %q", rep.Ignored[i-1].Name, ic.Name)
		}
	}
}

func TestMultiPortMerge(t *testing.T) {
	host := k8sHost("multi", "ns")
	in := newInputs()
	// Port 80 → 8080 on most endpoints, 9090 on .3; port 443 → 8443; port
	// 9000 has no endpoints; port 53 ties 5353 and 53 (ties → lowest).
	in.addEDS(edsCluster(outbound(80, "", host)),
		ep{addr: "127.0.0.2", port: 8080, weight: 3, zone: "z2", node: "n2"},
		ep{addr: "127.0.0.10", port: 8080},
		ep{addr: "127.0.0.3", port: 9090},
	)
	in.addEDS(edsCluster(outbound(443, "", host)),
		ep{addr: "127.0.0.10", port: 8443, weight: 7, zone: "z9"},
		ep{addr: "127.0.0.2", port: 8443, weight: 5},
		ep{addr: "127.0.0.4", port: 8443, weight: 4, zone: "z4", node: "n4"},
	)
	in.addEDS(edsCluster(outbound(9000, "", host)))
	in.addEDS(edsCluster(outbound(53, "", host)),
		ep{addr: "127.0.0.5", port: 5353}, ep{addr: "127.0.0.6", port: 53},
		// The same address twice with two target ports: two endpoints.
		// And one exact duplicate (other zone), dropped.
		ep{addr: "127.0.0.7", port: 5400}, ep{addr: "127.0.0.7", port: 5300}, ep{addr: "127.0.0.7", port: 5300, zone: "dup"},
	)

	out, _ := Translate(in)
	s := mustService(t, out, "ns", "multi")
	wantPorts := []*v1.ServicePort{
		{Port: 53, TargetPort: 53, Protocol: v1.Protocol_TCP},
		{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP},
		{Port: 443, TargetPort: 8443, Protocol: v1.Protocol_TCP},
		{Port: 9000, TargetPort: 0, Protocol: v1.Protocol_TCP},
	}
	if d := cmp.Diff(wantPorts, s.Spec.Ports, protocmp.Transform()); d != "" {
		t.Errorf("ports (-want +got):\n%s", d)
	}
	if s.Spec.LoadBalancing != v1.LoadBalancing_LEAST_REQUEST {
		t.Errorf("load balancing %v", s.Spec.LoadBalancing)
	}
	want := []*v1.Endpoint{
		{Address: "127.0.0.2", Port: 8080, Weight: 3, Locality: "r1/z2/", NodeName: "n2", TargetPorts: map[uint32]uint32{80: 8080, 443: 8443}},
		{Address: "127.0.0.3", Port: 9090, Weight: 1, TargetPorts: map[uint32]uint32{80: 9090}},
		{Address: "127.0.0.4", Port: 8443, Weight: 4, Locality: "r1/z4/", NodeName: "n4", TargetPorts: map[uint32]uint32{443: 8443}},
		{Address: "127.0.0.5", Port: 5353, Weight: 1, TargetPorts: map[uint32]uint32{53: 5353}},
		{Address: "127.0.0.6", Port: 53, Weight: 1, TargetPorts: map[uint32]uint32{53: 53}},
		{Address: "127.0.0.7", Port: 5300, Weight: 1, TargetPorts: map[uint32]uint32{53: 5300}},
		{Address: "127.0.0.7", Port: 5400, Weight: 1, TargetPorts: map[uint32]uint32{53: 5400}},
		{Address: "127.0.0.10", Port: 8080, Weight: 1, TargetPorts: map[uint32]uint32{80: 8080, 443: 8443}},
	}
	if d := cmp.Diff(want, s.Endpoints(), protocmp.Transform()); d != "" {
		t.Errorf("endpoints (-want +got):\n%s", d)
	}
}

func TestEndpointFields(t *testing.T) {
	host := k8sHost("fields", "ns")
	in := newInputs()
	statuses := []corev3.HealthStatus{
		corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY, corev3.HealthStatus_UNHEALTHY,
		corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT, corev3.HealthStatus_DEGRADED,
	}
	wantHealth := []v1.Health{
		v1.Health_HEALTH_UNKNOWN, v1.Health_HEALTHY, v1.Health_UNHEALTHY,
		v1.Health_DRAINING, v1.Health_TIMEOUT, v1.Health_DEGRADED,
	}
	var eps []ep
	for i, h := range statuses {
		eps = append(eps, ep{addr: endpointAddr(i), port: 8080, health: h})
	}
	c := edsCluster(outbound(80, "", host))
	in.addEDS(c, eps...)
	// Endpoints meshrelay cannot use: a hostname, a pipe, a named port.
	a := in.Endpoints[c.Name]
	a.Endpoints[0].LbEndpoints = append(a.Endpoints[0].LbEndpoints,
		lbEndpoint(ep{addr: "backend.example.com", port: 80}),
		&endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/x"}}}}}},
		&endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "127.0.9.9", PortSpecifier: &corev3.SocketAddress_NamedPort{NamedPort: "http"}}}}}}},
		// A named endpoint.
		&endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_EndpointName{EndpointName: "named"}},
	)
	a.NamedEndpoints = map[string]*endpointv3.Endpoint{"named": lbEndpoint(ep{addr: "127.0.8.8", port: 8080}).GetEndpoint()}

	out, rep := Translate(in)
	got := mustService(t, out, "ns", "fields").Endpoints()
	if len(got) != len(statuses)+1 {
		t.Fatalf("%d endpoints, want %d", len(got), len(statuses)+1)
	}
	for i, h := range wantHealth {
		if got[i].Health != h || got[i].Weight != 1 || got[i].Locality != "" {
			t.Errorf("endpoint %d: health %v weight %d locality %q; want %v, 1, empty", i, got[i].Health, got[i].Weight, got[i].Locality, h)
		}
	}
	if got[len(got)-1].Address != "127.0.8.8" {
		t.Errorf("named endpoint missing: last is %v", got[len(got)-1])
	}
	if rep.SkippedEndpoints != 3 || rep.Endpoints != len(statuses)+1 {
		t.Errorf("report: %d skipped, %d endpoints", rep.SkippedEndpoints, rep.Endpoints)
	}
}

func TestClusterKinds(t *testing.T) {
	in := newInputs()
	// EDS with an explicit service name.
	named := edsCluster(outbound(80, "", k8sHost("eds", "ns")))
	named.EdsClusterConfig.ServiceName = "eds-assignment"
	in.Clusters[named.Name] = named
	in.Endpoints["eds-assignment"] = cla("eds-assignment", ep{addr: "127.0.0.1", port: 8080})
	in.Endpoints[named.Name] = cla(named.Name, ep{addr: "127.0.0.99", port: 1}) // not read
	// STATIC with an inline assignment (also the unset discovery type).
	for _, name := range []string{"static", "unset"} {
		c := &clusterv3.Cluster{Name: outbound(80, "", k8sHost(name, "ns")), LoadAssignment: cla("", ep{addr: "127.0.0.2", port: 80})}
		if name == "static" {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		}
		in.Clusters[c.Name] = c
	}
	// STRICT_DNS with a hostname endpoint: a service without endpoints.
	dns := &clusterv3.Cluster{
		Name:                 outbound(443, "", "dns.example.com"),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		LoadAssignment:       cla("", ep{addr: "dns.example.com", port: 443}),
	}
	in.Clusters[dns.Name] = istioMeta(dns, "dns.example.com", "dns", "ns")

	out, rep := Translate(in)
	for name, want := range map[string]string{"eds": "127.0.0.1", "static": "127.0.0.2", "unset": "127.0.0.2"} {
		eps := mustService(t, out, "ns", name).Endpoints()
		if len(eps) != 1 || eps[0].Address != want {
			t.Errorf("%s: endpoints %v, want one at %s", name, eps, want)
		}
	}
	if s := mustService(t, out, "ns", "dns"); len(s.Slices) != 0 || s.Spec.EndpointSlices != 0 {
		t.Errorf("dns: %d slices", len(s.Slices))
	}
	if rep.SkippedEndpoints != 1 {
		t.Errorf("skipped %d endpoints, want 1", rep.SkippedEndpoints)
	}
}

func TestLoadBalancingAndProtocol(t *testing.T) {
	lb := map[clusterv3.Cluster_LbPolicy]v1.LoadBalancing{ // default, or not one meshrelay knows: ROUND_ROBIN
		clusterv3.Cluster_ROUND_ROBIN:      v1.LoadBalancing_ROUND_ROBIN,
		clusterv3.Cluster_LEAST_REQUEST:    v1.LoadBalancing_LEAST_REQUEST,
		clusterv3.Cluster_RANDOM:           v1.LoadBalancing_RANDOM,
		clusterv3.Cluster_RING_HASH:        v1.LoadBalancing_RING_HASH,
		clusterv3.Cluster_MAGLEV:           v1.LoadBalancing_MAGLEV,
		clusterv3.Cluster_CLUSTER_PROVIDED: v1.LoadBalancing_ROUND_ROBIN,
	}
	in := newInputs()
	for p := range lb {
		c := edsCluster(outbound(80, "", k8sHost(strings.ToLower(strings.ReplaceAll(p.String(), "_", "-")), "lb")))
		c.LbPolicy = p
		in.addEDS(c)
	}
	// load_balancing_policy wins over lb_policy.
	maglev, _ := anypb.New(wrapperspb.String("stand-in"))
	maglev.TypeUrl = "type.googleapis.com/envoy.extensions.load_balancing_policies.maglev.v3.Maglev"
	c := edsCluster(outbound(80, "", k8sHost("policy", "lb")))
	c.LbPolicy = clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG
	c.LoadBalancingPolicy = &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{
		{TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "x", TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/example.Unknown"}}},
		{TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "m", TypedConfig: maglev}},
	}}
	in.addEDS(c)

	// Protocols: metadata, port name convention, endpoint socket protocol.
	in.addEDS(istioMeta(edsCluster(outbound(53, "", k8sHost("dns", "proto"))), "", "", "", "port_name", "dns", "protocol", "udp"))
	in.addEDS(istioMeta(edsCluster(outbound(54, "", k8sHost("dns", "proto"))), "", "", "", "port_name", "udp-alt"))
	in.addEDS(edsCluster(outbound(55, "", k8sHost("dns", "proto"))), ep{addr: "127.0.0.1", port: 55, udp: true})
	in.addEDS(edsCluster(outbound(56, "", k8sHost("dns", "proto"))), ep{addr: "127.0.0.1", port: 56, udp: true}, ep{addr: "127.0.0.2", port: 56})
	in.addEDS(istioMeta(edsCluster(outbound(57, "", k8sHost("dns", "proto"))), "", "", "", "port_name", "tcp-dns"))

	out, _ := Translate(in)
	for p, want := range lb {
		name := strings.ToLower(strings.ReplaceAll(p.String(), "_", "-"))
		if got := mustService(t, out, "lb", name).Spec.LoadBalancing; got != want {
			t.Errorf("%v: %v, want %v", p, got, want)
		}
	}
	if got := mustService(t, out, "lb", "policy").Spec.LoadBalancing; got != v1.LoadBalancing_MAGLEV {
		t.Errorf("load_balancing_policy: %v, want MAGLEV", got)
	}
	want := []*v1.ServicePort{
		{Port: 53, Protocol: v1.Protocol_UDP, Name: "dns"},
		{Port: 54, Protocol: v1.Protocol_UDP, Name: "udp-alt"},
		{Port: 55, TargetPort: 55, Protocol: v1.Protocol_UDP},
		{Port: 56, TargetPort: 56, Protocol: v1.Protocol_TCP},
		{Port: 57, Protocol: v1.Protocol_TCP, Name: "tcp-dns"},
	}
	if d := cmp.Diff(want, mustService(t, out, "proto", "dns").Spec.Ports, protocmp.Transform()); d != "" {
		t.Errorf("ports (-want +got):\n%s", d)
	}
}

func TestVIPs(t *testing.T) {
	a, b, c := k8sHost("a", "ns"), k8sHost("b", "ns"), k8sHost("c", "ns")
	in := newInputs()
	for _, h := range []string{a, b, c} {
		in.addEDS(edsCluster(outbound(80, "", h)))
	}
	in.addEDS(edsCluster(outbound(8080, "", c)))
	// Listeners: a specific VIP, the same VIP again on another port
	// (dedup), a subset destination, weighted to one host, 0.0.0.0 and ::
	// (ignored), ambiguous weighted clusters (dropped with a warning).
	in.addListener(tcpListener("127.77.0.1", 80, outbound(80, "", a)))
	in.addListener(tcpListener("127.77.0.1", 8080, outbound(8080, "", a)))
	in.addListener(tcpListener("127.77.0.3", 80, outbound(80, "v1", b), outbound(80, "v2", b)))
	in.addListener(tcpListener("0.0.0.0", 80, outbound(80, "", c)))
	in.addListener(tcpListener("::", 81, outbound(80, "", c)))
	in.addListener(tcpListener("127.77.0.9", 9, outbound(9, "", a), outbound(9, "", b)))
	// Routes: Istio's route "80" with VIP domains in every form; a virtual
	// host that splits traffic between two hosts but names one.
	in.Routes["80"] = &routev3.RouteConfiguration{Name: "80", VirtualHosts: []*routev3.VirtualHost{
		vhost(a, 80, []string{a, a + ":80", "a", "a.ns", "127.77.0.2", "127.77.0.2:80", "[fd00::1]:80", "[fd00::1]"}),
		vhost(b, 80, []string{b, b + ":80", "127.77.0.4:80"}, outbound(80, "", b), outbound(80, "", c)),
		vhost(c, 80, []string{"c.ns", "127.77.0.5"}, outbound(80, "", a), outbound(80, "", b)),
		allowAny(),
	}}
	in.Routes["8080"] = &routev3.RouteConfiguration{Name: "8080", VirtualHosts: []*routev3.VirtualHost{
		vhost(c, 8080, []string{"127.77.0.6", "127.77.0.10:8080", "0.0.0.0"}),
	}}

	out, rep := Translate(in)
	for name, want := range map[string][]string{
		"a": {"127.77.0.1", "127.77.0.2", "fd00::1"},
		"b": {"127.77.0.3", "127.77.0.4"},
		"c": {"127.77.0.6", "127.77.0.10"},
	} {
		if got := mustService(t, out, "ns", name).Spec.Vips; !slices.Equal(got, want) {
			t.Errorf("%s: VIPs %v, want %v", name, got, want)
		}
	}
	if rep.WarningCount != 2 {
		t.Errorf("warnings %v, want one for listener 127.77.0.9_9 and one for virtual host c", rep.Warnings)
	}
}

func TestVIPConflictAndHostnameCollision(t *testing.T) {
	in := newInputs()
	in.addEDS(edsCluster(outbound(80, "", k8sHost("a", "ns"))))
	in.addEDS(edsCluster(outbound(80, "", k8sHost("b", "ns"))))
	in.addListener(tcpListener("127.77.0.1", 80, outbound(80, "", k8sHost("a", "ns"))))
	in.Routes["80"] = &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{vhost(k8sHost("b", "ns"), 80, []string{"127.77.0.1"})}}
	// Two ServiceEntry hosts naming the same service: the smaller wins.
	in.addEDS(istioMeta(edsCluster(outbound(80, "", "y.example.com")), "y.example.com", "se", "ns"), ep{addr: "127.0.0.2", port: 80})
	in.addEDS(istioMeta(edsCluster(outbound(81, "", "x.example.com")), "x.example.com", "se", "ns"), ep{addr: "127.0.0.1", port: 81})

	out, rep := Translate(in)
	se := mustService(t, out, "ns", "se")
	if se.Spec.Hostname != "x.example.com" || len(se.Spec.Ports) != 1 || se.Spec.Ports[0].Port != 81 {
		t.Errorf("collision: %v", se.Spec)
	}
	want := []string{
		"VIP 127.77.0.1 belongs to several services: ns/a, ns/b",
		"cluster outbound|80||y.example.com: ns/se is already named by hostname x.example.com, dropped",
	}
	if !slices.Equal(rep.Warnings, want) {
		t.Errorf("warnings %q, want %q", rep.Warnings, want)
	}
}

func TestSlicesOver1000Endpoints(t *testing.T) {
	in := newInputs()
	var eps []ep
	for i := 2499; i >= 0; i-- {
		eps = append(eps, ep{addr: endpointAddr(i), port: 8080})
	}
	in.addEDS(edsCluster(outbound(80, "", k8sHost("big", "ns"))), eps...)
	out, rep := Translate(in)
	s := mustService(t, out, "ns", "big")
	if len(s.Slices) != 3 || s.Spec.EndpointSlices != 3 || rep.Slices != 3 || rep.Endpoints != 2500 {
		t.Fatalf("%d slices (spec %d, report %d), %d endpoints", len(s.Slices), s.Spec.EndpointSlices, rep.Slices, rep.Endpoints)
	}
	all := s.Endpoints()
	for i := 1; i < len(all); i++ {
		if netip.MustParseAddr(all[i-1].Address).Compare(netip.MustParseAddr(all[i].Address)) >= 0 {
			t.Fatalf("endpoints %d,%d out of order: %s, %s", i-1, i, all[i-1].Address, all[i].Address)
		}
	}
	if all[0].Address != "127.0.0.1" || all[len(all)-1].Address != endpointAddr(2499) {
		t.Errorf("first %s last %s", all[0].Address, all[len(all)-1].Address)
	}
}

func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	in := randomInputs(rng, 60)
	want, wantRep := Translate(in)
	if len(want) < 30 {
		t.Fatalf("generator made only %d services", len(want))
	}
	for round := range 5 {
		shuffled := shuffledCopy(rng, in)
		got, rep := Translate(shuffled)
		if len(got) != len(want) {
			t.Fatalf("round %d: %d services, want %d", round, len(got), len(want))
		}
		for k, w := range want {
			g := got[k]
			if g == nil || !bytes.Equal(encode(t, g), encode(t, w)) || g.Hash() != w.Hash() {
				t.Fatalf("round %d: %s differs", round, k)
			}
		}
		if d := cmp.Diff(wantRep, rep); d != "" {
			t.Fatalf("round %d: report differs:\n%s", round, d)
		}
	}
}

// shuffledCopy deep-copies in, inserting every map in a random order.
func shuffledCopy(rng *rand.Rand, in *Inputs) *Inputs {
	out := newInputs()
	copyShuffled(rng, in.Clusters, out.Clusters)
	copyShuffled(rng, in.Endpoints, out.Endpoints)
	copyShuffled(rng, in.Listeners, out.Listeners)
	copyShuffled(rng, in.Routes, out.Routes)
	return out
}

func copyShuffled[M proto.Message](rng *rand.Rand, from, to map[string]M) {
	names := make([]string, 0, len(from))
	for n := range from {
		names = append(names, n)
	}
	slices.Sort(names)
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, n := range names {
		to[n] = proto.Clone(from[n]).(M)
	}
}

// randomInputs generates about n services of random shape: Kubernetes and
// ServiceEntry hosts, 1-3 ports, shared and per-port endpoints, subset
// clusters, listener and route VIPs, and some clusters to ignore.
func randomInputs(rng *rand.Rand, n int) *Inputs {
	in := newInputs()
	route := &routev3.RouteConfiguration{Name: "80"}
	for i := range n {
		host := k8sHost(fmt.Sprintf("s%d", i), fmt.Sprintf("ns%d", i%4))
		entry := rng.IntN(5) == 0
		if entry {
			host = fmt.Sprintf("s%d.example.com", i)
		}
		ports := []uint32{80, 443, 9000}[:1+rng.IntN(3)]
		for _, p := range ports {
			c := edsCluster(outbound(p, "", host))
			c.LbPolicy = clusterv3.Cluster_LbPolicy([]int32{0, 1, 3}[rng.IntN(3)])
			if entry && rng.IntN(8) != 0 { // sometimes unnamed: ignored
				istioMeta(c, host, fmt.Sprintf("se%d", i), "external")
			}
			var eps []ep
			for e := range rng.IntN(6) {
				eps = append(eps, ep{
					addr:   endpointAddr(i*4 + e),
					port:   8000 + p + uint32(rng.IntN(2)),
					weight: uint32(rng.IntN(3)),
					health: corev3.HealthStatus(rng.IntN(6)),
					zone:   []string{"", "z1", "z2"}[rng.IntN(3)],
					node:   []string{"", "node-a"}[rng.IntN(2)],
				})
			}
			rng.Shuffle(len(eps), func(a, b int) { eps[a], eps[b] = eps[b], eps[a] })
			in.addEDS(c, eps...)
			if rng.IntN(4) == 0 {
				in.addEDS(edsCluster(outbound(p, "v1", host)), ep{addr: "127.0.200.1", port: 1})
			}
		}
		switch rng.IntN(3) {
		case 0:
			in.addListener(tcpListener(vipAddr(i), ports[0], outbound(ports[0], "", host)))
		case 1:
			route.VirtualHosts = append(route.VirtualHosts, vhost(host, 80, []string{host, vipAddr(i), vipAddr(i) + ":80"}))
		}
	}
	route.VirtualHosts = append(route.VirtualHosts, allowAny())
	in.Routes["80"] = route
	in.Clusters["BlackHoleCluster"] = &clusterv3.Cluster{Name: "BlackHoleCluster"}
	in.Clusters["inbound|8080||"] = &clusterv3.Cluster{Name: "inbound|8080||"}
	in.addListener(&listenerv3.Listener{Name: "virtualOutbound"})
	return in
}
