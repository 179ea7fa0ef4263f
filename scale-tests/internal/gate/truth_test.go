package gate

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// stateFor builds, by hand, the datapath state a node should hold for
// service t: one frontend per port, one slot per unit of reduced weight.
func stateFor(t istiodsim.ServiceTruth) datapath.State {
	st := datapath.NewState()
	var g uint32
	for _, e := range t.Endpoints {
		g = gcd(g, e.Weight)
	}
	for pi, p := range t.Ports {
		var table []uint32
		for i, e := range t.Endpoints {
			id := uint32(100*pi + i + 1)
			st.PutBackend(id, netip.AddrPortFrom(netip.MustParseAddr(e.Address), uint16(e.TargetPorts[p.Port])))
			for range e.Weight / g {
				table = append(table, id)
			}
		}
		vip := netip.AddrPortFrom(netip.MustParseAddr(t.VIPs[0]), uint16(p.Port))
		st.PutFrontend(datapath.NewFrontendKey(vip, datapath.TCP), uint32(pi+1), table)
	}
	return st
}

func TestGateComparesWithTruth(t *testing.T) {
	sim, err := istiodsim.New(istiodsim.Options{Services: 3, EndpointsPerService: 4, PortsPerService: 2, Weights: true, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	truth := sim.Truth()
	want := FromSim(truth).Services[1].Frontends
	if len(want) != 2 {
		t.Fatalf("want %d frontends, got %v", 2, want)
	}
	good := stateFor(truth[1])
	if n, diffs := CompareNode("n", StateOf(good), want, 10); n != 0 {
		t.Fatalf("a correct state differs: %v", diffs)
	}

	// A missing backend, a changed weight, an extra frontend: each is caught.
	bad := good.Clone()
	for k, v := range bad.Frontends {
		if k.AddrPort().Port() == 80 {
			bad.PutFrontend(k, v.FrontendId, bad.SlotTable(k)[1:])
		}
	}
	bad.PutFrontend(datapath.NewFrontendKey(netip.MustParseAddrPort("127.77.9.9:80"), datapath.TCP), 99, nil)
	n, diffs := CompareNode("n", StateOf(bad), want, 10)
	if n != 2 {
		t.Fatalf("want 2 differing frontends, got %d: %v", n, diffs)
	}
	joined := strings.Join(diffs, "\n")
	for _, s := range []string{"127.77.9.9:80 held but not wanted", ":80: "} {
		if !strings.Contains(joined, s) {
			t.Errorf("diffs lack %q:\n%s", s, joined)
		}
	}
	if n, _ := CompareNode("n", StateOf(datapath.NewState()), want, 1); n != 2 {
		t.Errorf("an empty datapath: %d differences, want 2", n)
	}
}
