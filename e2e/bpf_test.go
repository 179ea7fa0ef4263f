package e2e

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
	"github.com/meshrelay/meshrelay/internal/testsupport/dpfake"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// bpfEnv is a pin directory under /sys/fs/bpf and a child cgroup the
// programs attach to; the test removes both (detaching first).
type bpfEnv struct {
	pin, cgroup string
}

// newBPFEnv skips the test where BPF maps, pins or cgroup v2 programs are
// not available (not root, no bpffs, no cgroup v2 hierarchy).
func newBPFEnv(t *testing.T) bpfEnv {
	t.Helper()
	pin, cg := dpfake.CgroupEnv(t, "meshrelay-e2e-")
	return bpfEnv{pin: pin, cgroup: cg}
}

// open opens the pinned maps configured to attach the programs to the
// env's cgroup (the agent calls Attach), as the node agent's main does.
func (e bpfEnv) open(t *testing.T) *datapath.BPF {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	b, err := datapath.OpenBPF(datapath.BPFOptions{PinPath: e.pin, Logger: log,
		Programs: datapath.ProgramsOptions{CgroupPath: e.cgroup, MissInterval: 50 * time.Millisecond}})
	if err != nil {
		t.Skipf("skipping BPF test: cannot open BPF maps: %v", err)
	}
	return b
}

// TestBPFOnDemandAndRestart runs the agent over the bpf datapath with the
// socket programs attached to a child cgroup, in which a client connects
// to service VIPs: a declared service is translated to its endpoints (real
// listeners on the endpoints' loopback addresses); a connect to another
// service's VIP is a miss the programs report, and the agent loads that
// service, so that retried connects reach its endpoints. A new agent over
// the re-opened pinned maps (same etcd) then writes nothing, and traffic
// keeps flowing.
func TestBPFOnDemandAndRestart(t *testing.T) {
	env := newBPFEnv(t)
	w := newWorld(t, istiodsim.Options{Services: 10, EndpointsPerService: 2})
	truth := map[int]istiodsim.ServiceTruth{}
	for _, s := range w.sim.Truth() {
		truth[s.Index] = s
	}
	names := map[int][]string{}
	for _, i := range []int{2, 5} {
		for _, ep := range truth[i].Endpoints {
			addr := netip.AddrPortFrom(netip.MustParseAddr(ep.Address), uint16(ep.TargetPorts[80]))
			b, err := cgroupclient.ServeTCP(addr, ep.Address)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			names[i] = append(names[i], ep.Address)
		}
	}
	vip := func(i int) string { return truth[i].VIPs[0] + ":80" }

	b := env.open(t)
	opts := nodeagent.Options{Services: []keyspace.Service{w.svcKey(2)}, OnDemand: true, ServiceCIDRs: serviceCIDRs}
	first := startAgent(t, w.client, b, opts)
	w.converges(b, 2)

	client, err := cgroupclient.Start(env.cgroup, "-test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	reaches := func(i int) error {
		res, err := client.Do(cgroupclient.Request{Op: "tcp", Addr: vip(i), N: 4})
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors > 0 {
			return fmt.Errorf("%d of 4 connects to %s failed: %s", res.Errors, vip(i), res.FirstErr)
		}
		for name := range res.Backends {
			if !slices.Contains(names[i], name) {
				return fmt.Errorf("connect to %s answered by %s, not one of %v", vip(i), name, names[i])
			}
		}
		return nil
	}
	testenv.Eventually(t, "declared service translated", func() error { return reaches(2) })
	// Service 5 is not loaded: the first connects fail and are reported.
	testenv.Eventually(t, "service loaded on demand after a miss", func() error { return reaches(5) })
	if st := first.Stats(); st.MissesLoaded != 1 || st.OnDemand != 1 {
		t.Fatalf("stats %+v: want service 5 loaded by one miss", st)
	}
	w.converges(b, 2, 5)
	first.stop()
	b.Close()

	// Restart: nothing is written, and sockets are translated throughout.
	if err := reaches(2); err != nil {
		t.Fatalf("with no agent running: %v", err)
	}
	b2 := env.open(t)
	t.Cleanup(func() { b2.Close() })
	rec := dpfake.NewRecorder(b2)
	second := startAgent(t, w.client, rec, opts)
	testenv.Eventually(t, "second agent ready, on-demand service adopted", func() error {
		if st := second.Stats(); !st.Ready || st.Orphans != 0 || st.OnDemand != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	w.converges(b2, 2, 5)
	for _, i := range []int{2, 5} {
		if err := reaches(i); err != nil {
			t.Fatal(err)
		}
	}
	if n := rec.Entries(); n != 0 {
		t.Fatalf("restart over the pinned maps wrote %d entries", n)
	}
}
