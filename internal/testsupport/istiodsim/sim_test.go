package istiodsim

import (
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

func TestStartRefusesNonLoopbackAddresses(t *testing.T) {
	sim, err := New(Options{Services: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "[::]:0", "example.com:0", "127.0.0.1"} {
		if err := sim.Start(addr); err == nil {
			t.Errorf("Start(%q) succeeded", addr)
			sim.Stop()
		}
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start on loopback: %v", err)
	}
	if err := sim.Start("127.0.0.1:0"); err == nil {
		t.Errorf("second Start succeeded")
	}
}

func TestNewRejectsTooManyServices(t *testing.T) {
	if _, err := New(Options{Services: MaxServices + 1}); err == nil {
		t.Errorf("New with %d services succeeded", MaxServices+1)
	}
	if _, err := New(Options{Ports: []Port{{Port: 80, TargetPort: 8080}, {Port: 80, TargetPort: 8081}}}); err == nil {
		t.Errorf("New with a duplicate port succeeded")
	}
}

func TestRepushChangesVersionsNotContent(t *testing.T) {
	sim := startSim(t, Options{Services: 4, PortsPerService: 2})
	c := dial(t, sim.Addr())
	before := map[string]*discoveryv3.DiscoveryResponse{}
	before[ClusterType] = c.subscribe(ClusterType, nil)
	before[EndpointType] = c.subscribe(EndpointType, edsClusters(t, before[ClusterType]))
	before[ListenerType] = c.subscribe(ListenerType, nil)
	before[RouteType] = c.subscribe(RouteType, []string{HTTPRoute})

	sim.Repush()
	for _, typ := range []string{ClusterType, EndpointType, ListenerType, RouteType} { // Istiod's order
		r := c.recv(typ)
		b := before[typ]
		if r.GetVersionInfo() == b.GetVersionInfo() || r.GetNonce() == b.GetNonce() {
			t.Errorf("%s: version %s nonce %s unchanged by Repush", typ, r.GetVersionInfo(), r.GetNonce())
		}
		if instance(r.GetVersionInfo()) != instance(b.GetVersionInfo()) {
			t.Errorf("%s: instance changed by Repush: %s -> %s", typ, b.GetVersionInfo(), r.GetVersionInfo())
		}
		if !sameResources(r, b) {
			t.Errorf("%s: content changed by Repush", typ)
		}
		c.request(typ, namesFor(typ, edsClusters(t, before[ClusterType])), r)
	}
}

// instance is the instance part of a version "<instance>/<n>".
func instance(version string) string {
	i, _, _ := strings.Cut(version, "/")
	return i
}

func TestRestartGivesNewVersionPrefix(t *testing.T) {
	sim := startSim(t, Options{Services: 3})
	addr := sim.Addr()
	c := dial(t, addr)
	before := c.subscribe(ClusterType, nil)

	if err := sim.Restart(); err != nil {
		t.Fatal(err)
	}
	if sim.Addr() != addr {
		t.Errorf("restarted on %s, was %s", sim.Addr(), addr)
	}
	select {
	case err := <-c.errc:
		if err == nil {
			t.Errorf("old stream ended without error")
		}
	case <-time.After(wait):
		t.Fatal("old stream survived the restart")
	}
	after := dial(t, addr).subscribe(ClusterType, nil)
	if instance(after.GetVersionInfo()) == instance(before.GetVersionInfo()) {
		t.Errorf("version prefix unchanged by restart: %s, %s", before.GetVersionInfo(), after.GetVersionInfo())
	}
	if instance(after.GetNonce()) == instance(before.GetNonce()) || strings.SplitN(after.GetNonce(), "-", 2)[0] != instance(after.GetVersionInfo()) {
		t.Errorf("nonces %s -> %s do not follow the instance", before.GetNonce(), after.GetNonce())
	}
	if !sameResources(before, after) {
		t.Errorf("content changed by restart")
	}
	if st := sim.Stats(); st.StreamsTotal != 2 {
		t.Errorf("streams total = %d, want 2", st.StreamsTotal)
	}
}

func TestGenerates10kServices(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 services: not in -short")
	}
	sim := startSim(t, Options{Services: 10000, EndpointsPerService: 5, Namespaces: 100})
	if n := len(sim.Truth()); n != 10000 {
		t.Fatalf("truth has %d services", n)
	}
	c := dial(t, sim.Addr())
	cds := c.subscribe(ClusterType, nil)
	if n := len(cds.GetResources()); n != 10003 {
		t.Fatalf("CDS has %d clusters, want 10003", n)
	}
	eds := c.subscribe(EndpointType, edsClusters(t, cds))
	got := loads(t, eds)
	if len(got) != 10000 {
		t.Fatalf("EDS has %d assignments", len(got))
	}
	if n := len(addresses(got[ClusterName(80, "", "svc-9999.ns-99.svc.cluster.local")])); n != 5 {
		t.Errorf("svc-9999 has %d endpoints", n)
	}
}

// TestTruthOf: the truth of chosen services is theirs in Truth, in the
// order asked; deleted and unknown indexes are left out.
func TestTruthOf(t *testing.T) {
	sim, err := New(Options{Services: 6, EndpointsPerService: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.DeleteService(2); err != nil {
		t.Fatal(err)
	}
	all := map[int]ServiceTruth{}
	for _, st := range sim.Truth() {
		all[st.Index] = st
	}
	got := sim.TruthOf([]int{4, 2, 0, 17, -1})
	if len(got) != 2 || got[0].Index != 4 || got[1].Index != 0 {
		t.Fatalf("TruthOf(4, 2, 0, 17, -1) gave %d services, want 4 and 0 (2 deleted, 17 and -1 unknown)", len(got))
	}
	for _, st := range got {
		want := all[st.Index]
		if st.Name != want.Name || len(st.Endpoints) != len(want.Endpoints) {
			t.Fatalf("service %d: %s with %d endpoints, Truth has %s with %d", st.Index, st.Name, len(st.Endpoints), want.Name, len(want.Endpoints))
		}
		for i := range st.Endpoints {
			if st.Endpoints[i].Address != want.Endpoints[i].Address {
				t.Fatalf("service %d endpoint %d: %s, Truth has %s", st.Index, i, st.Endpoints[i].Address, want.Endpoints[i].Address)
			}
		}
	}
}
