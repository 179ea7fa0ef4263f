package chaos

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// TestHostileEtcdValues: someone writes hostile values over a declared
// service's keys in etcd (a spec counting 4294967295 slices, then bytes
// that are no spec). Every agent keeps the service's last good state,
// counts the values, stays bounded in memory and keeps applying other
// services; a relay restart repairs it.
func TestHostileEtcdValues(t *testing.T) {
	r := &result{Injected: "etcd Put of a spec with endpoint_slices=4294967295, then of undecodable bytes, over a declared service"}
	report(t, r)
	c, s := newScaledCluster(t)
	victim := declaredBy(0, s)[0]
	key := c.keys([]int{victim})[0]
	g := c.guard()
	spec, err := model.Marshal(&v1.ServiceSpec{Namespace: key.Namespace, Name: key.Name, Vips: []string{"127.77.200.1"},
		Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080}}, EndpointSlices: 4294967295})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.client.Put(ctx, space.Spec(key), string(spec)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the hostile spec counted", func() error { return c.invalidSeen(etcdsource.ReasonSliceCount) })
	if _, err := c.client.Put(ctx, space.Spec(key), "\x0a\xff\xff\xff\xff\x0f garbage"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the undecodable spec counted", func() error { return c.invalidSeen(etcdsource.ReasonDecode) })

	// Other services keep flowing meanwhile.
	other := declaredBy(0, s)[2]
	if err := c.sim.ChurnEndpoints(other, 1); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	// The simulator's truth for the victim did not change: converging
	// means the agents kept its last good state.
	c.converge("agents keep the victim and apply the other change")
	r.Converge = time.Since(changed)
	g.finish(r)
	c.checkNoDeletes()

	// A running relay does not watch its keys, so it does not see the
	// foreign write; a restarted one compares etcd with the upstream and
	// rewrites the victim (a change of its endpoints alone, written as a
	// slice, leaves the hostile spec in place).
	if err := c.sim.ChurnEndpoints(victim, 1); err != nil {
		t.Fatal(err)
	}
	c.relay.kill()
	c.startRelay()
	c.converge("the restarted relay repairs the victim")
	var invalid int64
	for _, a := range c.agents {
		for _, n := range a.Stats().Source.Invalid {
			invalid += n
		}
	}
	r.Figures = fmt.Sprintf("%d invalid values counted by the agents; %s", invalid, c.checkRelayRSS())
}

// invalidSeen reports whether every agent declaring anything counted an
// invalid value for reason (only agents watching the victim can).
func (c *cluster) invalidSeen(reason string) error {
	for i, a := range c.agents {
		if i > 0 {
			break // agent 0 declares the victim
		}
		if a.Stats().Source.Invalid[reason] == 0 {
			return fmt.Errorf("agent %d: no invalid value of reason %s counted: %v", i, reason, a.Stats().Source.Invalid)
		}
	}
	return nil
}

// TestFullMapParks: one node's slots map is tiny. A service grows past
// what it holds: the agent parks it at its last written state, keeps
// applying other services, and unparks it once it fits again.
func TestFullMapParks(t *testing.T) {
	r := &result{Injected: "a service grown past a node's tiny slots map (memory datapath, MaxEntries.Slots)"}
	report(t, r)
	s := currentScale()
	c := newCluster(t, istiodsim.Options{Services: s.Services, EndpointsPerService: 3})
	declared := []int{0, 1, 2}
	// Three services of three endpoints use a few slots each; the map
	// holds a few times that, and a service of 200 endpoints cannot fit.
	a := c.addAgent(declared, nodeagent.Options{}, datapath.MemoryOptions{MaxEntries: datapath.MaxEntries{Slots: 64}})
	c.converge("agent converges")
	entries0 := a.rec.Entries()
	g := c.guard()
	if err := c.sim.SetEndpoints(0, 200); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the grown service parked", func() error {
		if st := a.Stats(); st.Parked != 1 {
			return fmt.Errorf("stats: parked %d, parks %d, apply errors %d", st.Parked, st.Parks, st.ApplyErrors)
		}
		return nil
	})
	if err := c.sim.ChurnEndpoints(1, 1); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	testenv.Eventually(t, "the other services keep flowing", func() error {
		got, _, err := heldLines(context.Background(), a.rec)
		if err != nil {
			return err
		}
		if d := diff(filterFrontends(got, c.truthLines([]int{0})), c.truthLines([]int{1, 2})); d != "" {
			return fmt.Errorf("%s", d)
		}
		return nil
	})
	r.Converge = time.Since(changed)
	g.finish(r)
	c.checkNoDeletes()
	if err := c.sim.SetEndpoints(0, 3); err != nil {
		t.Fatal(err)
	}
	c.converge("the parked service fits again and is applied")
	testenv.Eventually(t, "unparked", func() error {
		if st := a.Stats(); st.Parked != 0 {
			return fmt.Errorf("parked %d", st.Parked)
		}
		return nil
	})
	st := a.Stats()
	r.Writes = fmt.Sprintf("%d entries", a.rec.Entries()-entries0)
	r.Figures = fmt.Sprintf("%d parkings, %d failed change sets", st.Parks, st.ApplyErrors)
}

// filterFrontends drops from got the lines of the frontends in other (a
// parked service, whose old state is checked by the guard).
func filterFrontends(got, other []string) []string {
	fes := map[string]bool{}
	for _, l := range other {
		fes[frontendOf(l)] = true
	}
	var out []string
	for _, l := range got {
		if !fes[frontendOf(l)] {
			out = append(out, l)
		}
	}
	return out
}

func frontendOf(line string) string {
	for i := range len(line) - 1 {
		if line[i] == ' ' && line[i+1] == '-' {
			return line[:i]
		}
	}
	return line
}

// TestMissScan: a workload scans many unknown addresses in the service
// CIDR of an on-demand agent. The agent's etcd reads stay at one per /24,
// every miss is counted, and a real service asked for during the scan
// still loads.
func TestMissScan(t *testing.T) {
	r := &result{Injected: "ReportMiss for a scan of unknown addresses (8 scanners), a real VIP missed during it"}
	report(t, r)
	s := currentScale()
	c := newCluster(t, istiodsim.Options{Services: s.Services, EndpointsPerService: 3})
	a := c.addAgent(nil, nodeagent.Options{OnDemand: true,
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Source:       etcdsource.Options{MaxVIPReadsPerSecond: 200}}, datapath.MemoryOptions{})
	testenv.Eventually(t, "agent ready", func() error {
		if ok, why := a.Ready(); !ok {
			return fmt.Errorf("not ready: %s", why)
		}
		return nil
	})
	addr := func(i int) netip.AddrPort {
		v := uint32(100)<<16 + uint32(i) // 127.100.0.0 on
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(v >> 16), byte(v >> 8), byte(v)}), 80)
	}
	const scanners = 8
	done := make(chan struct{})
	started := make(chan struct{})
	go func() {
		defer close(done)
		errs := make(chan struct{}, scanners)
		for g := range scanners {
			go func() {
				defer func() { errs <- struct{}{} }()
				for i := g; i < s.Scan; i += scanners {
					if i == s.Scan/10 {
						close(started)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					if _, ok, _ := a.ReportMiss(ctx, addr(i)); ok {
						t.Errorf("scanned address %s resolved", addr(i))
					}
					cancel()
				}
			}()
		}
		for range scanners {
			<-errs
		}
	}()
	<-started
	legit := c.sim.Truth()[5]
	a.declared = []int{legit.Index}
	asked := time.Now()
	vip := netip.AddrPortFrom(netip.MustParseAddr(legit.VIPs[0]), uint16(legit.Ports[0].Port))
	testenv.Eventually(t, "the real service loads during the scan", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, ok, err := a.ReportMiss(ctx, vip); !ok {
			return fmt.Errorf("miss for %s not loaded: %v", vip, err)
		}
		return nil
	})
	c.converge("the on-demand service matches the simulator")
	r.Converge = time.Since(asked)
	<-done
	st := a.Stats()
	ranges := (s.Scan + 255) / 256
	if st.Source.Gets > int64(ranges+2) {
		t.Errorf("%d etcd reads of vips/ for %d scanned addresses, want at most %d", st.Source.Gets, s.Scan, ranges+2)
	}
	if st.MissesUnknown+st.MissesDropped < int64(s.Scan) {
		t.Errorf("misses unknown %d + dropped %d < %d scanned", st.MissesUnknown, st.MissesDropped, s.Scan)
	}
	c.checkNoDeletes()
	r.Figures = fmt.Sprintf("%d addresses scanned: %d etcd reads (%d /24s), %d unknown, %d dropped", s.Scan, st.Source.Gets, ranges, st.MissesUnknown, st.MissesDropped)
}
