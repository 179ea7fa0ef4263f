package istiodsim

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// subscribeAll subscribes c to CDS and to EDS of every cluster, and waits
// until the Sim has its ACKs. It returns the EDS cluster names and the EDS
// response.
func subscribeAll(t *testing.T, sim *Sim, c *client) ([]string, *discoveryv3.DiscoveryResponse) {
	t.Helper()
	names := edsClusters(t, c.subscribe(ClusterType, nil))
	r := c.subscribe(EndpointType, names)
	waitAcked(t, sim)
	return names, r
}

func waitAcked(t *testing.T, sim *Sim) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := sim.WaitAcked(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestChurnPushesPartialEDS(t *testing.T) {
	pushed := make(chan PushInfo, 10)
	sim := startSim(t, Options{Services: 5, PortsPerService: 2, EndpointsPerService: 4, OnPush: func(p PushInfo) { pushed <- p }})
	c := dial(t, sim.Addr())
	names, _ := subscribeAll(t, sim, c)
	before := sim.Stats()
	old := truthAddresses(sim.Truth()[3])

	if err := sim.ChurnEndpoints(3, 2); err != nil {
		t.Fatal(err)
	}
	r := c.recv(EndpointType)
	got := loads(t, r)
	want := []string{ClusterName(80, "", "svc-3.ns-0.svc.cluster.local"), ClusterName(81, "", "svc-3.ns-0.svc.cluster.local")}
	if len(got) != 2 || got[want[0]] == nil || got[want[1]] == nil {
		t.Fatalf("partial EDS push has %v, want exactly %v", slices.Sorted(maps.Keys(got)), want)
	}
	now := truthAddresses(sim.Truth()[3])
	if a := addresses(got[want[0]]); !slices.Equal(a, now) {
		t.Errorf("pushed addresses %v, truth %v", a, now)
	}
	if kept := len(intersect(now, setOfStrings(old))); kept != 2 {
		t.Errorf("%d of 4 addresses kept after churning 2 (%v -> %v)", kept, old, now)
	}
	c.request(EndpointType, names, r)
	waitAcked(t, sim)
	if d := sim.Stats().Responses - before.Responses; d != 1 {
		t.Errorf("churn sent %d responses, want 1", d)
	}
	if sim.LastPushTime(3).IsZero() || !sim.LastPushTime(1).IsZero() {
		t.Errorf("push times: svc-3 %v, svc-1 %v", sim.LastPushTime(3), sim.LastPushTime(1))
	}
	select {
	case p := <-pushed:
		if !slices.Equal(p.Services, []int{3}) || p.Version != r.GetVersionInfo() || len(p.Full) != 0 || !p.Time.Equal(sim.LastPushTime(3)) {
			t.Errorf("OnPush got %+v; response version %s, push time %v", p, r.GetVersionInfo(), sim.LastPushTime(3))
		}
	default:
		t.Errorf("OnPush was not called")
	}
}

func TestRemoveAndRestoreEndpoints(t *testing.T) {
	sim := startSim(t, Options{Services: 20, EndpointsPerService: 5, Seed: 3})
	c := dial(t, sim.Addr())
	names, _ := subscribeAll(t, sim, c)
	total := func() (n int) {
		for _, s := range sim.Truth() {
			n += len(s.Endpoints)
		}
		return n
	}
	removed, err := sim.RemoveEndpoints(0.3)
	if err != nil {
		t.Fatal(err)
	}
	if removed == 0 || total() != 100-removed {
		t.Fatalf("removed %d, %d endpoints left of 100", removed, total())
	}
	r := c.recv(EndpointType)
	got := loads(t, r)
	shrunk := 0
	for _, s := range sim.Truth() {
		cla, ok := got[ClusterName(80, "", s.Hostname)]
		if len(s.Endpoints) < 5 {
			shrunk++
			if !ok || !slices.Equal(addresses(cla), truthAddresses(s)) {
				t.Errorf("%s: pushed %v, truth %v", s.Name, addresses(cla), truthAddresses(s))
			}
		}
	}
	if len(got) != shrunk {
		t.Errorf("node-failure push carries %d clusters, %d services lost endpoints", len(got), shrunk)
	}
	c.request(EndpointType, names, r)
	if n := sim.RestoreEndpoints(); n != removed || total() != 100 {
		t.Errorf("restored %d of %d, total %d", n, removed, total())
	}
	if got := loads(t, c.recv(EndpointType)); len(got) != shrunk {
		t.Errorf("restore push carries %d clusters, want %d", len(got), shrunk)
	}
}

func TestAddAndDeleteServices(t *testing.T) {
	sim := startSim(t, Options{Services: 3})
	c := dial(t, sim.Addr())
	_, eds := subscribeAll(t, sim, c)

	added, err := sim.AddServices(2)
	if err != nil || !slices.Equal(added, []int{3, 4}) {
		t.Fatalf("AddServices = %v, %v", added, err)
	}
	cds := c.recv(ClusterType)
	grown := edsClusters(t, cds)
	if len(grown) != 5 || !slices.Contains(grown, ClusterName(80, "", "svc-4.ns-0.svc.cluster.local")) {
		t.Fatalf("CDS after adding: %v", grown)
	}
	c.request(ClusterType, nil, cds)
	// The client learns the new clusters from CDS and subscribes to them:
	// Istiod answers with every subscribed assignment.
	c.request(EndpointType, grown, eds)
	eds = c.recv(EndpointType)
	if got := loads(t, eds); len(got) != 5 {
		t.Fatalf("EDS after subscribing to the new clusters has %d assignments, want 5", len(got))
	}
	c.request(EndpointType, grown, eds)

	if err := sim.DeleteService(0); err != nil {
		t.Fatal(err)
	}
	shrunk := edsClusters(t, c.recv(ClusterType))
	if len(shrunk) != 4 || slices.Contains(shrunk, ClusterName(80, "", "svc-0.ns-0.svc.cluster.local")) {
		t.Errorf("CDS after deleting svc-0: %v", shrunk)
	}
	if err := sim.DeleteService(0); err == nil {
		t.Errorf("deleting svc-0 twice succeeded")
	}
	if n := len(sim.Truth()); n != 4 {
		t.Errorf("truth has %d services, want 4", n)
	}
}

func TestDebounceCoalescesPushes(t *testing.T) {
	sim := startSim(t, Options{Services: 3, Debounce: 300 * time.Millisecond})
	c := dial(t, sim.Addr())
	_, _ = subscribeAll(t, sim, c)
	pushes := sim.Stats().Pushes
	if err := sim.ChurnEndpoints(0, 1); err != nil {
		t.Fatal(err)
	}
	if err := sim.ChurnEndpoints(1, 1); err != nil {
		t.Fatal(err)
	}
	got := loads(t, c.recv(EndpointType))
	if len(got) != 2 {
		t.Errorf("debounced push carries %d clusters, want both changed ones", len(got))
	}
	if d := sim.Stats().Pushes - pushes; d != 1 {
		t.Errorf("%d pushes for two changes within the debounce period, want 1", d)
	}
}

func setOfStrings(s []string) map[string]struct{} {
	m := map[string]struct{}{}
	for _, x := range s {
		m[x] = struct{}{}
	}
	return m
}
