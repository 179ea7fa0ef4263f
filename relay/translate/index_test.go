package translate

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
)

// typeOrder is the order Istiod pushes in (CDS, EDS, LDS, RDS).
var typeOrder = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// resources returns in's resources of one type as Apply takes them.
func resources(in *Inputs, typeURL string) map[string]proto.Message {
	out := map[string]proto.Message{}
	switch typeURL {
	case resourcev3.ClusterType:
		for n, m := range in.Clusters {
			out[n] = m
		}
	case resourcev3.EndpointType:
		for n, m := range in.Endpoints {
			out[n] = m
		}
	case resourcev3.ListenerType:
		for n, m := range in.Listeners {
			out[n] = m
		}
	case resourcev3.RouteType:
		for n, m := range in.Routes {
			out[n] = m
		}
	}
	return out
}

// mustApply applies and returns the dirty set.
func mustApply(t testing.TB, x *Index, typeURL string, up map[string]proto.Message, removed ...string) []keyspace.Service {
	t.Helper()
	return x.Apply(typeURL, up, removed)
}

// indexOf builds an Index holding in.
func indexOf(t testing.TB, in *Inputs) *Index {
	t.Helper()
	x := NewIndex()
	for _, typ := range typeOrder {
		mustApply(t, x, typ, resources(in, typ))
	}
	return x
}

// simpleInputs has n single-port services s<i>.ns with 5 endpoints each;
// even ones get a listener VIP, odd ones a virtual host in route "80".
func simpleInputs(n int) *Inputs {
	in := newInputs()
	route := &routev3.RouteConfiguration{Name: "80"}
	for i := range n {
		host := k8sHost(fmt.Sprintf("s%d", i), "ns")
		var eps []ep
		for e := range 5 {
			eps = append(eps, ep{addr: endpointAddr(i*5 + e), port: 8080, zone: "z1"})
		}
		in.addEDS(edsCluster(outbound(80, "", host)), eps...)
		if i%2 == 0 {
			in.addListener(tcpListener(vipAddr(i), 80, outbound(80, "", host)))
		} else {
			route.VirtualHosts = append(route.VirtualHosts, vhost(host, 80, []string{host, host + ":80", vipAddr(i), vipAddr(i) + ":80"}))
		}
	}
	in.Routes["80"] = route
	return in
}

func key(i int) keyspace.Service {
	return keyspace.Service{Namespace: "ns", Name: fmt.Sprintf("s%d", i)}
}

func TestIndexPartialEDS(t *testing.T) {
	in := simpleInputs(50)
	x := indexOf(t, in)
	if got := len(x.Services()); got != 50 {
		t.Fatalf("%d services, want 50", got)
	}
	name := outbound(80, "", k8sHost("s7", "ns"))
	changed := cla(name, ep{addr: "127.0.250.1", port: 8080})
	dirty := mustApply(t, x, resourcev3.EndpointType, map[string]proto.Message{name: changed})
	if !slices.Equal(dirty, []keyspace.Service{key(7)}) {
		t.Fatalf("dirty %v, want [ns/s7]", dirty)
	}
	s, ok := x.Service(key(7))
	if !ok || len(s.Endpoints()) != 1 || s.Endpoints()[0].Address != "127.0.250.1" {
		t.Fatalf("ns/s7 after the push: %v %v", ok, s)
	}
	// Re-pushing the same content, or an assignment no cluster reads,
	// dirties nothing.
	if dirty := mustApply(t, x, resourcev3.EndpointType, map[string]proto.Message{name: proto.Clone(changed)}); len(dirty) != 0 {
		t.Fatalf("identical re-push dirtied %v", dirty)
	}
	if dirty := mustApply(t, x, resourcev3.EndpointType, map[string]proto.Message{"orphan": cla("orphan")}); len(dirty) != 0 {
		t.Fatalf("orphan assignment dirtied %v", dirty)
	}
	// A full-state CDS re-push of equal clusters dirties nothing either.
	if dirty := mustApply(t, x, resourcev3.ClusterType, resources(in, resourcev3.ClusterType)); len(dirty) != 0 {
		t.Fatalf("identical CDS push dirtied %d services", len(dirty))
	}
}

func TestIndexRemoveCluster(t *testing.T) {
	in := simpleInputs(4)
	host := k8sHost("s1", "ns")
	in.addEDS(edsCluster(outbound(443, "", host)), ep{addr: endpointAddr(5), port: 8443})
	x := indexOf(t, in)

	dirty := mustApply(t, x, resourcev3.ClusterType, nil, outbound(443, "", host))
	if !slices.Equal(dirty, []keyspace.Service{key(1)}) {
		t.Fatalf("dirty %v", dirty)
	}
	if s, ok := x.Service(key(1)); !ok || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != 80 {
		t.Fatalf("after removing port 443: %v %v", ok, s)
	}
	dirty = mustApply(t, x, resourcev3.ClusterType, nil, outbound(80, "", host), "never-existed")
	if !slices.Equal(dirty, []keyspace.Service{key(1)}) {
		t.Fatalf("dirty %v", dirty)
	}
	if _, ok := x.Service(key(1)); ok {
		t.Fatal("ns/s1 still exists without clusters")
	}
	if got := x.Services(); !slices.Equal(got, []keyspace.Service{key(0), key(2), key(3)}) {
		t.Fatalf("services %v", got)
	}
	// Its route VIP comes back with the cluster.
	mustApply(t, x, resourcev3.ClusterType, map[string]proto.Message{outbound(80, "", host): edsCluster(outbound(80, "", host))})
	if s, ok := x.Service(key(1)); !ok || !slices.Equal(s.Spec.Vips, []string{vipAddr(1)}) || len(s.Endpoints()) != 5 {
		t.Fatalf("re-added ns/s1: %v %v", ok, s)
	}
}

func TestIndexVIPChanges(t *testing.T) {
	in := simpleInputs(6)
	x := indexOf(t, in)
	// Change one virtual host's VIP in route "80": only that service.
	route := proto.Clone(in.Routes["80"]).(*routev3.RouteConfiguration)
	route.VirtualHosts[1].Domains = []string{vipAddr(100)} // s3
	dirty := mustApply(t, x, resourcev3.RouteType, map[string]proto.Message{"80": route})
	if !slices.Equal(dirty, []keyspace.Service{key(3)}) {
		t.Fatalf("dirty %v, want [ns/s3]", dirty)
	}
	if s, _ := x.Service(key(3)); !slices.Equal(s.Spec.Vips, []string{vipAddr(100)}) {
		t.Fatalf("VIPs %v", s.Spec.Vips)
	}
	// Remove a listener: its service loses the VIP.
	dirty = mustApply(t, x, resourcev3.ListenerType, nil, vipAddr(2)+"_80")
	if !slices.Equal(dirty, []keyspace.Service{key(2)}) {
		t.Fatalf("dirty %v, want [ns/s2]", dirty)
	}
	if s, _ := x.Service(key(2)); len(s.Spec.Vips) != 0 {
		t.Fatalf("VIPs %v after removing the listener", s.Spec.Vips)
	}
	// Point a listener at another service: both are dirty.
	l := tcpListener(vipAddr(0), 80, outbound(80, "", k8sHost("s4", "ns")))
	dirty = mustApply(t, x, resourcev3.ListenerType, map[string]proto.Message{l.Name: l})
	if !slices.Equal(dirty, []keyspace.Service{key(0), key(4)}) {
		t.Fatalf("dirty %v, want [ns/s0 ns/s4]", dirty)
	}
	if s, _ := x.Service(key(4)); !slices.Equal(s.Spec.Vips, []string{vipAddr(0), vipAddr(4)}) {
		t.Fatalf("VIPs %v", s.Spec.Vips)
	}
}

func TestIndexApplyMismatch(t *testing.T) {
	x := indexOf(t, simpleInputs(2))
	if dirty := x.Apply("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", nil, []string{outbound(80, "", k8sHost("s0", "ns"))}); len(dirty) != 0 {
		t.Errorf("unknown type dirtied %v", dirty)
	}
	up := map[string]proto.Message{
		"bad":                                  cla("bad"),
		outbound(80, "", k8sHost("new", "ns")): edsCluster(outbound(80, "", k8sHost("new", "ns"))),
	}
	dirty := x.Apply(resourcev3.ClusterType, up, nil)
	want := []keyspace.Service{{Namespace: "ns", Name: "new"}}
	if !slices.Equal(dirty, want) {
		t.Errorf("dirty %v, want %v", dirty, want)
	}
	if got := x.Services(); !slices.Equal(got, []keyspace.Service{want[0], key(0), key(1)}) {
		t.Errorf("services %v", got)
	}
}

// TestIndexMatchesTranslate moves an Index from one random state to
// another in random batches and checks that it then agrees with Translate,
// and that every service whose translation changed was reported dirty.
func TestIndexMatchesTranslate(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	for seed := range uint64(rounds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			from := randomInputs(rng, 40)
			to := mutate(rng, from)
			x := indexOf(t, from)
			assertSame(t, x, from)

			before, _ := Translate(from)
			after, _ := Translate(to)
			dirty := map[keyspace.Service]bool{}
			types := slices.Clone(typeOrder)
			rng.Shuffle(len(types), func(i, j int) { types[i], types[j] = types[j], types[i] })
			for _, typ := range types {
				old, now := resources(from, typ), resources(to, typ)
				var removed []string
				for n := range old {
					if _, ok := now[n]; !ok {
						removed = append(removed, n)
					}
				}
				// Upsert everything (SotW), in up to three batches.
				batches := []map[string]proto.Message{{}, {}, {}}
				for n, m := range now {
					batches[rng.IntN(3)][n] = m
				}
				for i, b := range batches {
					var rm []string
					if i == 0 {
						rm = removed
					}
					for _, k := range mustApply(t, x, typ, b, rm...) {
						dirty[k] = true
					}
				}
			}
			assertSame(t, x, to)
			for k := range union(before, after) {
				changed := (before[k] == nil) != (after[k] == nil) ||
					(before[k] != nil && before[k].Hash() != after[k].Hash())
				if changed && !dirty[k] {
					t.Errorf("%s changed but was not reported dirty", k)
				}
			}
		})
	}
}

// assertSame checks that x holds exactly the services Translate(in) gives.
func assertSame(t *testing.T, x *Index, in *Inputs) {
	t.Helper()
	want, _ := Translate(in)
	keys := x.Services()
	if len(keys) != len(want) {
		t.Fatalf("index has %d services, Translate %d", len(keys), len(want))
	}
	for _, k := range keys {
		got, ok := x.Service(k)
		if !ok || want[k] == nil {
			t.Fatalf("%s: index %v, Translate %v", k, ok, want[k] != nil)
		}
		if !bytes.Equal(encode(t, got), encode(t, want[k])) {
			t.Fatalf("%s differs:\nindex     %v\ntranslate %v", k, got.Spec, want[k].Spec)
		}
	}
}

// mutate returns a copy of in with random clusters, assignments, listeners
// and virtual hosts changed, removed or added.
func mutate(rng *rand.Rand, in *Inputs) *Inputs {
	out := shuffledCopy(rng, in)
	extra := randomInputs(rng, 50) // overlapping names, different content
	for n, c := range extra.Clusters {
		switch rng.IntN(6) {
		case 0:
			out.Clusters[n] = c
		case 1:
			delete(out.Clusters, n)
		}
	}
	for n, a := range extra.Endpoints {
		switch rng.IntN(4) {
		case 0:
			out.Endpoints[n] = a
		case 1:
			delete(out.Endpoints, n)
		}
	}
	for n, l := range extra.Listeners {
		switch rng.IntN(4) {
		case 0:
			out.Listeners[n] = l
		case 1:
			delete(out.Listeners, n)
		}
	}
	route := out.Routes["80"]
	for i := range route.VirtualHosts {
		if rng.IntN(4) == 0 {
			route.VirtualHosts[i].Domains = append(route.VirtualHosts[i].Domains, vipAddr(1000+i))
		}
	}
	if rng.IntN(2) == 0 {
		route.VirtualHosts = route.VirtualHosts[:len(route.VirtualHosts)/2]
	}
	if rng.IntN(4) == 0 {
		delete(out.Routes, "80")
	}
	// Repoint a cluster's EDS service name.
	for n, c := range out.Clusters {
		if rng.IntN(10) == 0 && c.GetType() == clusterv3.Cluster_EDS {
			c.EdsClusterConfig.ServiceName = "renamed-" + n
			if rng.IntN(2) == 0 {
				out.Endpoints["renamed-"+n] = cla("renamed-"+n, ep{addr: "127.0.201.1", port: 8080})
			}
		}
	}
	return out
}

func union(a, b map[keyspace.Service]*model.Service) map[keyspace.Service]bool {
	out := map[keyspace.Service]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// hcmListener is Istio's 0.0.0.0_<port> listener reading RDS route name.
func hcmListener(port uint32, route string) *listenerv3.Listener {
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix:     "outbound_0.0.0.0_" + route,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: route}},
	})
	if err != nil {
		panic(err)
	}
	return &listenerv3.Listener{
		Name: fmt.Sprintf("0.0.0.0_%d", port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}}},
	}
}

// TestIndexRoutesPending: a route a listener reads counts as pending until
// it arrives, and stops counting when no listener reads it any more.
func TestIndexRoutesPending(t *testing.T) {
	x := NewIndex()
	l := hcmListener(80, "80")
	mustApply(t, x, resourcev3.ListenerType, map[string]proto.Message{l.Name: l})
	if n := x.RoutesPending(); n != 1 {
		t.Fatalf("listener reading route 80: %d pending, want 1", n)
	}
	mustApply(t, x, resourcev3.RouteType, map[string]proto.Message{"80": &routev3.RouteConfiguration{Name: "80"}})
	if n := x.RoutesPending(); n != 0 {
		t.Fatalf("route 80 received: %d pending", n)
	}
	mustApply(t, x, resourcev3.RouteType, nil, "80")
	if n := x.RoutesPending(); n != 1 {
		t.Fatalf("route 80 removed while read: %d pending, want 1", n)
	}
	mustApply(t, x, resourcev3.ListenerType, nil, l.Name)
	if n := x.RoutesPending(); n != 0 {
		t.Fatalf("no listener reads route 80: %d pending", n)
	}
}
