package istiodsim

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCDSWildcardFullState(t *testing.T) {
	sim := startSim(t, Options{Services: 5, PortsPerService: 2, Namespaces: 2, SubsetClusters: true})
	c := dial(t, sim.Addr())
	r := c.subscribe(ClusterType, nil)

	got := clusters(t, r)
	// 5 services x 2 ports x (service + subset) + 3 non-service clusters.
	if len(got) != 5*2*2+3 {
		t.Fatalf("CDS has %d clusters, want %d", len(got), 23)
	}
	byName := map[string]*clusterv3.Cluster{}
	for _, c := range got {
		byName[c.GetName()] = c
	}
	for _, n := range []string{BlackHoleCluster, PassthroughCluster, InboundPassthroughCluster, "outbound|81|v1|svc-4.ns-0.svc.cluster.local"} {
		if byName[n] == nil {
			t.Errorf("cluster %q missing", n)
		}
	}
	c3 := byName["outbound|81||svc-3.ns-1.svc.cluster.local"]
	if c3 == nil {
		t.Fatalf("cluster outbound|81||svc-3.ns-1.svc.cluster.local missing; have %v", edsClusters(t, r))
	}
	if c3.GetType() != clusterv3.Cluster_EDS || c3.GetEdsClusterConfig().GetServiceName() != c3.GetName() ||
		c3.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil || c3.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		t.Errorf("cluster %s is not an ADS EDS round-robin cluster: %v", c3.GetName(), c3)
	}
	svcs := c3.GetMetadata().GetFilterMetadata()["istio"].GetFields()["services"].GetListValue().GetValues()
	if len(svcs) != 1 {
		t.Fatalf("istio metadata services = %v", svcs)
	}
	f := svcs[0].GetStructValue().GetFields()
	if f["host"].GetStringValue() != "svc-3.ns-1.svc.cluster.local" || f["name"].GetStringValue() != "svc-3" || f["namespace"].GetStringValue() != "ns-1" {
		t.Errorf("istio metadata = %v", f)
	}

	l := c.subscribe(ListenerType, nil)
	var names []string
	for _, a := range l.GetResources() {
		ln := &listenerv3.Listener{}
		if err := a.UnmarshalTo(ln); err != nil {
			t.Fatalf("decode listener: %v", err)
		}
		names = append(names, ln.GetName())
	}
	if len(names) != 5*2+1 || !slices.Contains(names, "127.77.0.4_81") || !slices.Contains(names, HTTPListener) {
		t.Errorf("listeners = %v", names)
	}
}

func TestEDSAnswersExactlyTheSubscribedNames(t *testing.T) {
	sim := startSim(t, Options{Services: 4, EndpointsPerService: 3, Weights: true, Seed: 7})
	c := dial(t, sim.Addr())
	want := []string{ClusterName(80, "", "svc-2.ns-0.svc.cluster.local"), ClusterName(80, "", "svc-0.ns-0.svc.cluster.local")}
	r := c.subscribe(EndpointType, append(slices.Clone(want), "outbound|80||unknown.ns-0.svc.cluster.local"))

	got := loads(t, r)
	if len(got) != 2 || got[want[0]] == nil || got[want[1]] == nil {
		t.Fatalf("EDS answered %v, want exactly %v", slices.Collect(maps.Keys(got)), want)
	}
	truth := sim.Truth()
	cla := got[want[0]]
	if a, w := addresses(cla), truthAddresses(truth[2]); !slices.Equal(a, w) {
		t.Errorf("svc-2 addresses %v, truth %v", a, w)
	}
	byAddr := map[string]EndpointTruth{}
	for _, e := range truth[2].Endpoints {
		byAddr[e.Address] = e
	}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			tr := byAddr[sa.GetAddress()]
			if sa.GetPortValue() != 8080 || e.GetLoadBalancingWeight().GetValue() != tr.Weight ||
				l.GetLocality().GetZone() != tr.Zone || l.GetLocality().GetRegion() != tr.Region {
				t.Errorf("endpoint %v in %v does not match truth %+v", e, l.GetLocality(), tr)
			}
		}
	}
}

func TestRDSRouteConfiguration(t *testing.T) {
	sim := startSim(t, Options{Services: 3})
	c := dial(t, sim.Addr())
	r := c.subscribe(RouteType, []string{HTTPRoute})
	if len(r.GetResources()) != 1 {
		t.Fatalf("RDS answered %d resources", len(r.GetResources()))
	}
	rc := &routev3.RouteConfiguration{}
	if err := r.GetResources()[0].UnmarshalTo(rc); err != nil {
		t.Fatal(err)
	}
	if rc.GetName() != HTTPRoute || len(rc.GetVirtualHosts()) != 3+1 {
		t.Fatalf("route %s has %d virtual hosts", rc.GetName(), len(rc.GetVirtualHosts()))
	}
	vh := rc.GetVirtualHosts()[1]
	if !slices.Contains(vh.GetDomains(), "127.77.0.2") || !slices.Contains(vh.GetDomains(), "svc-1.ns-0.svc.cluster.local:80") ||
		vh.GetRoutes()[0].GetRoute().GetCluster() != "outbound|80||svc-1.ns-0.svc.cluster.local" {
		t.Errorf("virtual host = %v", vh)
	}
}

func TestEmptyEDSRequestIsAViolation(t *testing.T) {
	sim := startSim(t, Options{Services: 2})
	c := dial(t, sim.Addr())
	names := []string{ClusterName(80, "", "svc-0.ns-0.svc.cluster.local")}
	c.request(EndpointType, names, nil)
	r := c.recv(EndpointType)
	if len(r.GetResources()) != 1 {
		t.Fatalf("EDS answered %d resources", len(r.GetResources()))
	}
	if v := sim.Violations(); len(v) != 0 {
		t.Fatalf("violations before the empty request: %v", v)
	}
	c.request(EndpointType, nil, r) // Istiod reads this as "unsubscribe everything"
	empty := c.recv(EndpointType)
	if len(empty.GetResources()) != 0 {
		t.Errorf("after unsubscribing, EDS answered %d resources", len(empty.GetResources()))
	}
	v := sim.Violations()
	if len(v) != 1 || !strings.Contains(v[0], "unsubscribes") {
		t.Fatalf("violations = %q, want one about unsubscribing", v)
	}
}

func TestStaleNonceIsIgnored(t *testing.T) {
	sim := startSim(t, Options{Services: 2})
	c := dial(t, sim.Addr())
	a, b := ClusterName(80, "", "svc-0.ns-0.svc.cluster.local"), ClusterName(80, "", "svc-1.ns-0.svc.cluster.local")
	c.request(EndpointType, []string{a}, nil)
	r := c.recv(EndpointType)
	stale := &discoveryv3.DiscoveryResponse{VersionInfo: r.GetVersionInfo(), Nonce: "not-the-last-nonce"}
	c.request(EndpointType, []string{a, b}, stale)
	// A request not handled yet is replaced by a newer one of its type:
	// let the Sim look at the stale one first.
	for deadline := time.Now().Add(wait); sim.Stats().StaleRequests == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	c.request(EndpointType, []string{a, b}, r)
	r2 := c.recv(EndpointType)
	if got := loads(t, r2); len(got) != 2 {
		t.Errorf("after the subscription change EDS answered %d assignments, want 2", len(got))
	}
	if s := sim.Stats().StaleRequests; s != 1 {
		t.Errorf("stale requests = %d, want 1", s)
	}
}

func TestNackIsRecorded(t *testing.T) {
	sim := startSim(t, Options{Services: 2})
	c := dial(t, sim.Addr())
	c.request(ClusterType, nil, nil)
	r := c.recv(ClusterType)
	c.nack(r, nil, "cluster rejected")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := sim.WaitAcked(ctx); err != nil {
		t.Fatal(err)
	}
	n := sim.Nacks()
	if len(n) != 1 {
		t.Fatalf("nacks = %v, want 1", n)
	}
	if n[0].TypeURL != ClusterType || n[0].Nonce != r.GetNonce() || n[0].Message != "cluster rejected" ||
		n[0].Code != codes.InvalidArgument || n[0].Node != testNode {
		t.Errorf("nack = %+v, nonce sent %s", n[0], r.GetNonce())
	}
}

func TestMalformedPush(t *testing.T) {
	sim := startSim(t, Options{Services: 3})
	c := dial(t, sim.Addr())
	good := c.subscribe(ClusterType, nil)
	names := edsClusters(t, good)
	goodEDS := c.subscribe(EndpointType, names)
	before := sim.Truth()

	for _, tc := range []struct {
		typeURL string
		m       Malformation
	}{
		{ClusterType, Undecodable},
		{ClusterType, WrongType},
		{ClusterType, Nameless},
		{EndpointType, Undecodable},
		{EndpointType, Nameless},
	} {
		if err := sim.PushMalformed(tc.typeURL, tc.m); err != nil {
			t.Fatal(err)
		}
		r := c.recv(tc.typeURL)
		if !malformed(r) {
			t.Errorf("%s %s: response has no invalid resource", tc.typeURL, tc.m)
		}
		c.nack(r, namesFor(tc.typeURL, names), "invalid")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := sim.WaitAcked(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(sim.Nacks()); n != 5 {
		t.Errorf("nacks = %d, want 5", n)
	}
	if !truthEqual(before, sim.Truth()) {
		t.Errorf("truth changed by malformed pushes")
	}
	sim.Repush()
	r := c.recv(ClusterType)
	if malformed(r) || !sameResources(r, good) {
		t.Errorf("CDS after malformed pushes differs from the last good one")
	}
	if r := c.recv(EndpointType); malformed(r) || !sameResources(r, goodEDS) {
		t.Errorf("EDS after malformed pushes differs from the last good one")
	}
}

func namesFor(typeURL string, eds []string) []string {
	if typeURL == EndpointType {
		return eds
	}
	return nil
}

func TestInvalidNodeIsRefused(t *testing.T) {
	sim := startSim(t, Options{Services: 1})
	c := dial(t, sim.Addr())
	err := c.stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: ClusterType, Node: &corev3.Node{Id: "not-a-node-id"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.errc:
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("stream ended with %v, want InvalidArgument", err)
		}
	case r := <-c.resps:
		t.Fatalf("got a response for an invalid node: %v", r)
	case <-time.After(wait):
		t.Fatal("stream with an invalid node id was not closed")
	}
	if v := sim.Violations(); len(v) != 1 {
		t.Errorf("violations = %q", v)
	}
}

func TestStreamsShareBodiesButNotNonces(t *testing.T) {
	sim := startSim(t, Options{Services: 3})
	a, b := dial(t, sim.Addr()), dial(t, sim.Addr())
	ra, rb := a.subscribe(ClusterType, nil), b.subscribe(ClusterType, nil)
	if ra.GetVersionInfo() != rb.GetVersionInfo() || !sameResources(ra, rb) {
		t.Errorf("two streams got different CDS")
	}
	if ra.GetNonce() == rb.GetNonce() {
		t.Errorf("two streams got the same nonce %s", ra.GetNonce())
	}
	if n := sim.Streams(); n != 2 {
		t.Errorf("streams = %d, want 2", n)
	}
}

// malformed reports whether a response carries a resource that does not
// decode as the response's type, has another type or has no name.
func malformed(r *discoveryv3.DiscoveryResponse) bool {
	for _, a := range r.GetResources() {
		if a.GetTypeUrl() != r.GetTypeUrl() {
			return true
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return true
		}
		if n, ok := m.(interface{ GetName() string }); ok && n.GetName() == "" {
			return true
		}
		if n, ok := m.(interface{ GetClusterName() string }); ok && n.GetClusterName() == "" {
			return true
		}
	}
	return false
}

func truthEqual(a, b []ServiceTruth) bool {
	return slices.EqualFunc(a, b, func(x, y ServiceTruth) bool {
		return x.Index == y.Index && x.Hostname == y.Hostname && slices.Equal(x.VIPs, y.VIPs) &&
			slices.Equal(x.Ports, y.Ports) && slices.EqualFunc(x.Endpoints, y.Endpoints, func(e, f EndpointTruth) bool {
			return e.Address == f.Address && e.Port == f.Port && e.Weight == f.Weight && e.Region == f.Region &&
				e.Zone == f.Zone && e.Health == f.Health && maps.Equal(e.TargetPorts, f.TargetPorts)
		})
	})
}
