package workload

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"istio.io/istio/pkg/workloadapi"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

var (
	keyA = keyspace.Service{Namespace: "ns", Name: "a"}
	keyB = keyspace.Service{Namespace: "ns", Name: "b"}
	refA = svcName("ns", "a")
	refB = svcName("ns", "b")
)

func mustService(t *testing.T, x *Index, k keyspace.Service) (*v1.ServiceSpec, []*v1.Endpoint) {
	t.Helper()
	s, ok := x.Service(k)
	if !ok {
		t.Fatalf("service %s missing", k)
	}
	return s.Spec, s.Endpoints()
}

func TestServiceSpec(t *testing.T) {
	x := NewIndex()
	dirty := x.Apply(AddressType, upserts(refA, svc("ns", "a", []string{"127.77.0.2", "127.77.0.1", "::1", "127.77.0.1"}, 443, 8443, 80, 8080)), nil)
	if diff := cmp.Diff([]keyspace.Service{keyA}, dirty); diff != "" {
		t.Fatalf("dirty (-want +got):\n%s", diff)
	}
	spec, eps := mustService(t, x, keyA)
	want := &v1.ServiceSpec{
		Namespace: "ns", Name: "a", Hostname: "a.ns.svc.cluster.local",
		Vips: []string{"127.77.0.1", "127.77.0.2", "::1"},
		Ports: []*v1.ServicePort{
			{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP},
			{Port: 443, TargetPort: 8443, Protocol: v1.Protocol_TCP},
		},
		LoadBalancing: v1.LoadBalancing_ROUND_ROBIN,
		ContentHash:   spec.GetContentHash(),
	}
	if diff := cmp.Diff(want, spec, protocmp.Transform()); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if len(eps) != 0 {
		t.Errorf("endpoints = %v, want none", eps)
	}
}

func TestWorkloadEndpoints(t *testing.T) {
	x := NewIndex()
	x.Apply(AddressType, upserts(
		refA, svc("ns", "a", []string{"127.77.0.1"}, 80, 8080, 443, 0),
		refB, svc("ns", "b", []string{"127.77.0.2"}, 90, 9090),
	), nil)
	dirty := x.Apply(AddressType, upserts(
		// Dual stack, in both services, named target port 8443 for 443.
		"w1", withStatus(wl("w1", "node-1", "z1", []string{"127.1.0.1", "::2"}, map[string][]uint32{refA: {80, 8080, 443, 8443}, refB: {90, 9091}}), workloadapi.WorkloadStatus_UNHEALTHY, 3),
		"w2", wl("w2", "node-2", "", []string{"127.1.0.2"}, map[string][]uint32{refA: {80, 8081}}),
	), nil)
	if diff := cmp.Diff([]keyspace.Service{keyA, keyB}, dirty); diff != "" {
		t.Fatalf("dirty (-want +got):\n%s", diff)
	}
	spec, eps := mustService(t, x, keyA)
	if got := spec.GetPorts()[1].GetTargetPort(); got != 8443 {
		t.Errorf("port 443 target = %d, want 8443 (from the workloads)", got)
	}
	want := []*v1.Endpoint{
		{Address: "127.1.0.1", Port: 8080, Weight: 3, Locality: "r/z1/", Health: v1.Health_UNHEALTHY, NodeName: "node-1", TargetPorts: map[uint32]uint32{80: 8080, 443: 8443}},
		{Address: "127.1.0.2", Port: 8081, Weight: 1, Health: v1.Health_HEALTHY, NodeName: "node-2", TargetPorts: map[uint32]uint32{80: 8081}},
		{Address: "::2", Port: 8080, Weight: 3, Locality: "r/z1/", Health: v1.Health_UNHEALTHY, NodeName: "node-1", TargetPorts: map[uint32]uint32{80: 8080, 443: 8443}},
	}
	if diff := cmp.Diff(want, eps, protocmp.Transform()); diff != "" {
		t.Errorf("endpoints of a (-want +got):\n%s", diff)
	}
	_, eps = mustService(t, x, keyB)
	if len(eps) != 2 || eps[0].GetPort() != 9091 {
		t.Errorf("endpoints of b = %v, want 2 on 9091", eps)
	}
}

func TestWorkloadChangeTouchesOnlyItsServices(t *testing.T) {
	x := NewIndex()
	x.Apply(AddressType, upserts(
		refA, svc("ns", "a", []string{"127.77.0.1"}, 80, 8080),
		refB, svc("ns", "b", []string{"127.77.0.2"}, 80, 8080),
		"w1", wl("w1", "n", "", []string{"127.1.0.1"}, map[string][]uint32{refA: {80, 8080}}),
	), nil)

	// Move w1 from a to b: both change.
	dirty := x.Apply(AddressType, upserts("w1", wl("w1", "n", "", []string{"127.1.0.1"}, map[string][]uint32{refB: {80, 8080}})), nil)
	if diff := cmp.Diff([]keyspace.Service{keyA, keyB}, dirty); diff != "" {
		t.Errorf("move: dirty (-want +got):\n%s", diff)
	}
	if _, eps := mustService(t, x, keyA); len(eps) != 0 {
		t.Errorf("a after move: %v, want none", eps)
	}
	if _, eps := mustService(t, x, keyB); len(eps) != 1 {
		t.Errorf("b after move: %v, want 1", eps)
	}

	// A new address of w1 touches b only.
	dirty = x.Apply(AddressType, upserts("w1", wl("w1", "n", "", []string{"127.1.0.9"}, map[string][]uint32{refB: {80, 8080}})), nil)
	if diff := cmp.Diff([]keyspace.Service{keyB}, dirty); diff != "" {
		t.Errorf("readdress: dirty (-want +got):\n%s", diff)
	}

	// A workload of an unknown service dirties nothing; the service picks
	// it up when it arrives.
	if dirty := x.Apply(AddressType, upserts("w2", wl("w2", "n", "", []string{"127.1.0.2"}, map[string][]uint32{svcName("ns", "c"): {80, 8080}})), nil); len(dirty) != 0 {
		t.Errorf("workload of unknown service: dirty %v", dirty)
	}
	x.Apply(AddressType, upserts(svcName("ns", "c"), svc("ns", "c", nil, 80, 8080)), nil)
	if _, eps := mustService(t, x, keyspace.Service{Namespace: "ns", Name: "c"}); len(eps) != 1 {
		t.Errorf("c: %v, want w2's endpoint", eps)
	}

	// Deleting w1 touches b; deleting b removes it.
	dirty = x.Apply(AddressType, nil, []string{"w1"})
	if diff := cmp.Diff([]keyspace.Service{keyB}, dirty); diff != "" {
		t.Errorf("delete workload: dirty (-want +got):\n%s", diff)
	}
	if _, eps := mustService(t, x, keyB); len(eps) != 0 {
		t.Errorf("b after workload delete: %v", eps)
	}
	x.Apply(AddressType, nil, []string{refB})
	if _, ok := x.Service(keyB); ok {
		t.Error("b still exists after its removal")
	}
	if diff := cmp.Diff([]keyspace.Service{keyA, {Namespace: "ns", Name: "c"}}, x.Services()); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if s, w := x.Len(); s != 2 || w != 1 {
		t.Errorf("Len = %d services, %d workloads; want 2, 1", s, w)
	}
}

func TestOtherTypesAndDuplicates(t *testing.T) {
	x := NewIndex()
	if d := x.Apply("type.googleapis.com/istio.security.Authorization", upserts(refA, svc("ns", "a", nil, 80, 80)), nil); d != nil {
		t.Errorf("authorization type changed %v", d)
	}
	// Two hostnames naming ns/a: the smaller hostname wins.
	big := svc("ns", "a", []string{"127.77.0.9"}, 80, 80)
	big.GetService().Hostname = "z.example.com"
	x.Apply(AddressType, upserts("ns/z.example.com", big, refA, svc("ns", "a", []string{"127.77.0.1"}, 80, 80)), nil)
	spec, _ := mustService(t, x, keyA)
	if spec.GetHostname() != "a.ns.svc.cluster.local" {
		t.Errorf("hostname %q, want the smaller", spec.GetHostname())
	}
	x.Apply(AddressType, nil, []string{refA})
	spec, _ = mustService(t, x, keyA)
	if spec.GetHostname() != "z.example.com" || spec.GetVips()[0] != "127.77.0.9" {
		t.Errorf("after removing the winner: %v", spec)
	}
	// Two workloads with one address: one endpoint.
	x.Apply(AddressType, upserts(
		"w1", wl("w1", "n1", "", []string{"127.1.0.1"}, map[string][]uint32{"ns/z.example.com": {80, 80}}),
		"w2", wl("w2", "n2", "", []string{"127.1.0.1"}, map[string][]uint32{"ns/z.example.com": {80, 80}}),
	), nil)
	if _, eps := mustService(t, x, keyA); len(eps) != 1 || eps[0].GetNodeName() != "n1" {
		t.Errorf("duplicate address: %v, want w1's only", eps)
	}
}
