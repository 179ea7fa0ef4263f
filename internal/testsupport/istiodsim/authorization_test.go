package istiodsim

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi/security"
)

// TestDeltaServesAuthorizations: the generated policies are served on
// subscription, changes and removals are pushed as differences, and a
// reconnect holding current versions gets nothing but what changed.
func TestDeltaServesAuthorizations(t *testing.T) {
	sim := startSim(t, Options{Services: 1, Authorizations: 3, Namespaces: 2})
	d := openDelta(t, sim)
	resp := subscribeDelta(t, d, ztunnelNode, AuthorizationType, nil)
	want := []string{"ns-0/policy-0", "ns-0/policy-2", "ns-1/policy-1"}
	var names []string
	versions := map[string]string{}
	for _, r := range resp.GetResources() {
		a := new(security.Authorization)
		if err := r.GetResource().UnmarshalTo(a); err != nil {
			t.Fatal(err)
		}
		// Sorted by name: policy 0, 2, then 1.
		if !proto.Equal(a, GeneratedAuthorization([]int{0, 2, 1}[len(names)%3], 2)) || r.GetName() != AuthorizationName(a) {
			t.Errorf("%s holds %v", r.GetName(), a)
		}
		names = append(names, r.GetName())
		versions[r.GetName()] = r.GetVersion()
	}
	if !slices.Equal(names, want) || !slices.Equal(sim.Authorizations(), want) {
		t.Fatalf("served %v, held %v; want %v", names, sim.Authorizations(), want)
	}
	if !proto.Equal(GeneratedAuthorization(1, 2), GeneratedAuthorization(1, 2)) ||
		GeneratedAuthorization(1, 2).GetAction() != security.Action_DENY {
		t.Fatal("generated policies are not deterministic")
	}

	changed := GeneratedAuthorization(0, 2)
	changed.Action = security.Action_DENY
	sim.PutAuthorization(changed)
	push, err := d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(push.GetResources()) != 1 || push.GetResources()[0].GetName() != "ns-0/policy-0" || len(push.GetRemovedResources()) != 0 {
		t.Fatalf("change pushed %v, removed %v", push.GetResources(), push.GetRemovedResources())
	}
	if !sim.DeleteAuthorization("ns-1", "policy-1") || sim.DeleteAuthorization("ns-1", "policy-1") {
		t.Fatal("DeleteAuthorization: want true, then false")
	}
	push, err = d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(push.GetResources()) != 0 || !slices.Equal(push.GetRemovedResources(), []string{"ns-1/policy-1"}) {
		t.Fatalf("delete pushed %v, removed %v", push.GetResources(), push.GetRemovedResources())
	}

	d2 := openDelta(t, sim)
	resp = subscribeDelta(t, d2, ztunnelNode, AuthorizationType, versions)
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != "ns-0/policy-0" ||
		!slices.Equal(resp.GetRemovedResources(), []string{"ns-1/policy-1"}) {
		t.Fatalf("reconnect got %v, removed %v; want the changed policy and the deleted one", resp.GetResources(), resp.GetRemovedResources())
	}
}
