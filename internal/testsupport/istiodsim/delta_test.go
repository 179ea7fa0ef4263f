package istiodsim

import (
	"context"
	"maps"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"istio.io/istio/pkg/workloadapi"
)

const ztunnelNode = "ztunnel~127.0.0.1~ztunnel-0.istio-system~istio-system.svc.cluster.local"

// openDelta opens a raw delta stream to sim.
func openDelta(t *testing.T, sim *Sim) discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
	t.Helper()
	conn, err := grpc.NewClient(sim.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	d, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func subscribeDelta(t *testing.T, d discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, node, url string, initial map[string]string) *discoveryv3.DeltaDiscoveryResponse {
	t.Helper()
	if err := d.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: url,
		ResourceNamesSubscribe: []string{"*"}, InitialResourceVersions: initial}); err != nil {
		t.Fatal(err)
	}
	resp, err := d.Recv()
	if err != nil {
		t.Fatalf("subscribe %s: %v", url, err)
	}
	if err := d.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: url, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDeltaRefusesBadNode(t *testing.T) {
	sim := startSim(t, Options{Services: 1})
	d := openDelta(t, sim)
	if err := d.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "nonsense"}, TypeUrl: AddressType}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad node: %v, want InvalidArgument", err)
	}
	if len(sim.Violations()) != 1 {
		t.Errorf("violations %v, want 1", sim.Violations())
	}
}

func TestDeltaServesAddresses(t *testing.T) {
	sim := startSim(t, Options{Services: 2, EndpointsPerService: 2})
	d := openDelta(t, sim)
	resp := subscribeDelta(t, d, ztunnelNode, AddressType, nil)
	if len(resp.GetResources()) != 2+2*2 || len(resp.GetRemovedResources()) != 0 {
		t.Fatalf("initial: %d resources, %d removed; want 6, 0", len(resp.GetResources()), len(resp.GetRemovedResources()))
	}
	versions := map[string]string{}
	services, workloads := 0, 0
	for _, r := range resp.GetResources() {
		a := new(workloadapi.Address)
		if err := r.GetResource().UnmarshalTo(a); err != nil {
			t.Fatalf("%s: %v", r.GetName(), err)
		}
		switch {
		case a.GetService() != nil:
			services++
		case a.GetWorkload() != nil:
			workloads++
			if a.GetWorkload().GetUid() != r.GetName() || len(a.GetWorkload().GetServices()) != 1 {
				t.Errorf("workload %s: %v", r.GetName(), a.GetWorkload())
			}
		}
		versions[r.GetName()] = r.GetVersion()
	}
	if services != 2 || workloads != 4 {
		t.Errorf("%d services, %d workloads; want 2, 4", services, workloads)
	}
	if auth := subscribeDelta(t, d, ztunnelNode, AuthorizationType, nil); len(auth.GetResources()) != 0 {
		t.Errorf("authorizations: %v, want none", auth.GetResources())
	}

	// A push sends only the difference.
	if err := sim.SetEndpoints(0, 1); err != nil {
		t.Fatal(err)
	}
	push, err := d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(push.GetResources()) != 0 || len(push.GetRemovedResources()) != 1 {
		t.Errorf("scale down: %d resources, removed %v; want 0, one workload", len(push.GetResources()), push.GetRemovedResources())
	}

	// A new stream that holds a stale version, a removed name and nothing
	// else gets exactly what differs.
	stale := map[string]string{"gone": "x"}
	for name, v := range versions {
		stale[name] = v
	}
	svc1 := ServiceAddressName("ns-0", "svc-1.ns-0.svc.cluster.local")
	stale[svc1] = "old"
	d2 := openDelta(t, sim)
	resp = subscribeDelta(t, d2, ztunnelNode, AddressType, stale)
	var names []string
	for _, r := range resp.GetResources() {
		names = append(names, r.GetName())
	}
	if len(names) != 1 || names[0] != svc1 {
		t.Errorf("reconnect resources %v, want only %s", names, svc1)
	}
	if got := resp.GetRemovedResources(); len(got) != 2 || got[1] != "gone" {
		t.Errorf("reconnect removed %v, want the scaled-down workload and gone", got)
	}
	subs := sim.DeltaSubscriptions()
	if len(subs) != 3 || len(subs[2].InitialResourceVersions) != len(stale) || subs[2].Node != ztunnelNode {
		t.Errorf("recorded subscriptions %+v", subs)
	}
}

// TestDeltaPushesOnlyChangedServices checks that pushes carry only the
// resources of the services a change touched, and that a client applying
// every push holds exactly what a new subscription receives.
func TestDeltaPushesOnlyChangedServices(t *testing.T) {
	sim := startSim(t, Options{Services: 3, EndpointsPerService: 2})
	d := openDelta(t, sim)
	held := map[string]string{}
	apply := func(resp *discoveryv3.DeltaDiscoveryResponse) {
		for _, r := range resp.GetResources() {
			held[r.GetName()] = r.GetVersion()
		}
		for _, name := range resp.GetRemovedResources() {
			if _, ok := held[name]; !ok {
				t.Errorf("removal of %s, which the client does not hold", name)
			}
			delete(held, name)
		}
	}
	apply(subscribeDelta(t, d, ztunnelNode, AddressType, nil))
	recv := func() *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		resp, err := d.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: AddressType, ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		apply(resp)
		return resp
	}

	if err := sim.ChurnEndpoints(1, 2); err != nil {
		t.Fatal(err)
	}
	push := recv()
	if len(push.GetResources()) != 2 || len(push.GetRemovedResources()) != 2 {
		t.Errorf("churn of 2 endpoints: %d resources, removed %v; want 2 new workloads, 2 removed", len(push.GetResources()), push.GetRemovedResources())
	}
	for _, r := range push.GetResources() {
		a := new(workloadapi.Address)
		if err := r.GetResource().UnmarshalTo(a); err != nil {
			t.Fatal(err)
		}
		if _, ok := a.GetWorkload().GetServices()[ServiceAddressName("ns-0", "svc-1.ns-0.svc.cluster.local")]; !ok {
			t.Errorf("churn of svc-1 pushed %s, not one of its workloads", r.GetName())
		}
	}
	if err := sim.SetEndpoints(0, 3); err != nil {
		t.Fatal(err)
	}
	recv()
	added, err := sim.AddServices(1)
	if err != nil {
		t.Fatal(err)
	}
	if push := recv(); len(push.GetResources()) != 1+2 {
		t.Errorf("service %v added: %d resources pushed, want its service and 2 workloads", added, len(push.GetResources()))
	}
	if err := sim.DeleteService(2); err != nil {
		t.Fatal(err)
	}
	if push := recv(); len(push.GetRemovedResources()) != 1+2 {
		t.Errorf("service 2 deleted: removed %v, want its service and 2 workloads", push.GetRemovedResources())
	}

	fresh := subscribeDelta(t, openDelta(t, sim), ztunnelNode, AddressType, nil)
	want := map[string]string{}
	for _, r := range fresh.GetResources() {
		want[r.GetName()] = r.GetVersion()
	}
	if !maps.Equal(held, want) {
		t.Errorf("client applying every push holds %d resources, a new subscription gets %d; they differ", len(held), len(want))
	}
}
