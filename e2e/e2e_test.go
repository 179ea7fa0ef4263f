package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/dpfake"
	"github.com/meshrelay/meshrelay/internal/testsupport/etcdcount"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/relay"
)

var serviceCIDRs = []netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")}

// TestDeclaredServicesConverge: the declared services reach the datapath
// exactly as the simulator holds them (VIP × port, target ports, weights),
// and no other service is ever read or watched.
func TestDeclaredServicesConverge(t *testing.T) {
	testDeclaredServicesConverge(t, relay.ModeSotW)
}

// TestDeclaredServicesConvergeWorkload is TestDeclaredServicesConverge with
// the relay in workload mode (delta WDS): the keyspace, and so the agent,
// do not depend on the mode.
func TestDeclaredServicesConvergeWorkload(t *testing.T) {
	testDeclaredServicesConverge(t, relay.ModeWorkload)
}

func testDeclaredServicesConverge(t *testing.T, mode relay.Mode) {
	w := newWorldMode(t, istiodsim.Options{Services: 30, EndpointsPerService: 4, Namespaces: 3, PortsPerService: 2, Weights: true, SubsetClusters: true}, mode)
	declared := []int{1, 5, 17, 22}
	var keys []keyspace.Service
	for _, i := range declared {
		keys = append(keys, w.svcKey(i))
	}
	cc := etcdcount.New(w.client.KV, w.client.Watcher)
	mem := newMemory()
	a := startAgent(t, cc, mem, nodeagent.Options{Services: keys, OnDemand: true, ServiceCIDRs: serviceCIDRs})
	w.converges(mem, declared...)
	testenv.Eventually(t, "ready", func() error {
		if ok, why := a.Ready(); !ok {
			return fmt.Errorf("not ready: %s", why)
		}
		return nil
	})
	// A change to a declared service and one to another service: only
	// the first reaches this node.
	if err := w.sim.ChurnEndpoints(5, 2); err != nil {
		t.Fatal(err)
	}
	if err := w.sim.ChurnEndpoints(6, 2); err != nil {
		t.Fatal(err)
	}
	w.converges(mem, declared...)

	allowed := map[string]bool{}
	for _, k := range keys {
		allowed[space.ServicePrefix(k)+"*"] = true
		allowed[space.Spec(k)] = true // a count-only read while etcd is not known complete
	}
	for _, k := range cc.Touched(space.ServicesPrefix()) {
		if !allowed[k] {
			t.Errorf("the agent read or watched %s, which it does not need", k)
		}
	}
	if st := a.Stats(); st.Lag.Count == 0 || st.Source.Services != len(keys) {
		t.Errorf("stats %+v: want lag samples and %d services watched", st, len(keys))
	} else {
		t.Logf("propagation lag: %d samples, p50 %.1f ms, p99 %.1f ms", st.Lag.Count, st.Lag.P50*1e3, st.Lag.P99*1e3)
	}
}

// TestOneEndpointChangeAndRepush: replacing one endpoint writes a handful
// of entries; an identical re-push of everything writes none.
func TestOneEndpointChangeAndRepush(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 10, EndpointsPerService: 8})
	keys := []keyspace.Service{w.svcKey(0), w.svcKey(1), w.svcKey(2)}
	rec := dpfake.NewRecorder(newMemory())
	a := startAgent(t, w.client, rec, nodeagent.Options{Services: keys})
	w.converges(rec, 0, 1, 2)
	w.quiesce()

	before, applies := rec.Entries(), a.Stats().Applies
	if err := w.sim.ChurnEndpoints(1, 1); err != nil {
		t.Fatal(err)
	}
	w.converges(rec, 0, 1, 2)
	w.quiesce()
	testenv.Eventually(t, "the replaced backend deleted", func() error {
		if g := a.Stats().Garbage; g != 0 {
			return fmt.Errorf("%d unreferenced entries waiting", g)
		}
		return nil
	})
	n := rec.Entries() - before
	t.Logf("one endpoint replaced: %d entries in %d change sets", n, a.Stats().Applies-applies)
	if n == 0 || n > 6 {
		t.Fatalf("one endpoint replaced wrote %d entries, want 1..6", n)
	}

	before, applies = rec.Entries(), a.Stats().Applies
	syscalls := a.DatapathStats().Map(datapath.MapSlots).Syscalls
	w.sim.Repush()
	w.quiesce()
	if d := rec.Entries() - before; d != 0 || a.Stats().Applies != applies || a.DatapathStats().Map(datapath.MapSlots).Syscalls != syscalls {
		t.Fatalf("identical re-push wrote %d entries in %d change sets", d, a.Stats().Applies-applies)
	}
}

// TestOnDemand: a miss for a service VIP loads that service with one read
// (of the vips/ keys of its /24); a miss for an unknown VIP is remembered.
func TestOnDemand(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 20, EndpointsPerService: 3})
	cc := etcdcount.New(w.client.KV, w.client.Watcher)
	mem := newMemory()
	a := startAgent(t, cc, mem, nodeagent.Options{OnDemand: true, ServiceCIDRs: serviceCIDRs})
	var vip string
	for _, s := range w.sim.Truth() {
		if s.Index == 7 {
			vip = s.VIPs[0]
		}
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr(vip), 80)
	svc, ok, err := a.ReportMiss(context.Background(), addr)
	if err != nil || !ok || svc != w.svcKey(7) {
		t.Fatalf("miss for %s: %v %v %v, want %s loaded", addr, svc, ok, err, w.svcKey(7))
	}
	w.converges(mem, 7)
	if n := cc.ReadCount(vipRange(vip)); n != 1 {
		t.Fatalf("%d reads of the vips/ of %s's /24, want 1", n, vip)
	}
	// A second miss for the loaded VIP (another port) reads nothing.
	if _, ok, _ := a.ReportMiss(context.Background(), netip.AddrPortFrom(addr.Addr(), 81)); !ok || cc.ReadCount(vipRange(vip)) != 1 {
		t.Fatal("a miss for a loaded VIP read etcd again")
	}

	unknown := netip.MustParseAddrPort("127.77.250.250:80")
	for range 2 {
		if _, ok, err := a.ReportMiss(context.Background(), unknown); ok || err != nil {
			t.Fatalf("miss for unknown %s: %v %v", unknown, ok, err)
		}
	}
	if n := cc.ReadCount(vipRange(unknown.Addr().String())); n != 1 {
		t.Fatalf("%d reads of the vips/ of %s's /24 for two misses, want 1 (negative cache)", n, unknown.Addr())
	}
	if st := a.Stats(); st.MissesLoaded != 1 || st.MissesKnown != 1 || st.MissesUnknown != 2 || st.Source.NegativeHits != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestCompactionWhileDisconnected: the agent loses etcd while services
// change and one is deleted, and etcd compacts its history meanwhile. It
// converges when back, and deletes only the deleted service's frontend.
func TestCompactionWhileDisconnected(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 12, EndpointsPerService: 3})
	px := startProxy(t, w.url)
	c := dialVia(t, px.URL())
	declared := []int{0, 1, 2, 3, 4}
	var keys []keyspace.Service
	for _, i := range declared {
		keys = append(keys, w.svcKey(i))
	}
	rec := dpfake.NewRecorder(newMemory())
	a := startAgent(t, c, rec, nodeagent.Options{Services: keys})
	w.converges(rec, declared...)

	px.SetDown(true)
	for i := range 10 {
		if err := w.sim.ChurnEndpoints(i%4, 1); err != nil {
			t.Fatal(err)
		}
	}
	var goneVIP string
	for _, s := range w.sim.Truth() {
		if s.Index == 4 {
			goneVIP = s.VIPs[0]
		}
	}
	if err := w.sim.DeleteService(4); err != nil {
		t.Fatal(err)
	}
	w.quiesce()
	// The relay may have written all of it in one transaction: one more
	// revision makes the compaction cover it.
	resp, err := w.client.Put(context.Background(), "/unrelated", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.client.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	px.SetDown(false)

	w.converges(rec, declared...)
	if d := rec.DeletedFrontends(); !slices.Equal(d, []string{"tcp/" + goneVIP + ":80"}) {
		t.Fatalf("frontends deleted %v, want only the deleted service's tcp/%s:80", d, goneVIP)
	}
	if st := a.Stats().Source; st.Compactions == 0 {
		t.Errorf("source stats %+v: the compaction was not exercised", st)
	} else {
		t.Logf("source: %d compacted watches, %d re-lists, %d removals deferred", st.Compactions, st.Relists, st.DeferredDeletes)
	}
}

// TestEtcdRebuild: etcd is lost and replaced by an empty one, which the
// relay rewrites under a new generation. The agent converges (a change made
// meanwhile included) and deletes nothing on the way.
func TestEtcdRebuild(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd")
	}
	w := newWorld(t, istiodsim.Options{Services: 30, EndpointsPerService: 3})
	declared := []int{3, 9, 14, 27}
	var keys []keyspace.Service
	for _, i := range declared {
		keys = append(keys, w.svcKey(i))
	}
	rec := dpfake.NewRecorder(newMemory())
	a := startAgent(t, w.client, rec, nodeagent.Options{Services: keys, OnDemand: true, ServiceCIDRs: serviceCIDRs})
	w.converges(rec, declared...)
	w.quiesce()

	w.wipe()
	if err := w.sim.ChurnEndpoints(9, 2); err != nil {
		t.Fatal(err)
	}
	w.converges(rec, declared...)
	testenv.Eventually(t, "generation change seen", func() error {
		if st := a.Stats().Source; st.GenerationChanges == 0 {
			return fmt.Errorf("source stats %+v", st)
		}
		return nil
	})
	w.quiesce()
	w.converges(rec, declared...)
	if d := rec.DeletedFrontends(); len(d) != 0 {
		t.Fatalf("frontends deleted across the etcd rebuild: %v", d)
	}
	st := a.Stats().Source
	t.Logf("source: %d generation changes, %d re-lists, %d removals deferred", st.GenerationChanges, st.Relists, st.DeferredDeletes)
}

// TestFlowControlBoundsQueue: with a tiny token bucket, a storm of pushes
// to five services keeps the agent's queue at most five deep, and
// everything converges.
func TestFlowControlBoundsQueue(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 8, EndpointsPerService: 4})
	declared := []int{0, 1, 2, 3, 4}
	var keys []keyspace.Service
	for _, i := range declared {
		keys = append(keys, w.svcKey(i))
	}
	mem := newMemory()
	a := startAgent(t, w.client, mem, nodeagent.Options{
		Services: keys, MaxMapOpsPerSecond: 100, Burst: 10, FlushWindow: time.Millisecond,
	})
	w.converges(mem, declared...)

	maxDepth := 0
	churns := 200
	for i := range churns {
		if err := w.sim.ChurnEndpoints(i%5, 1); err != nil {
			t.Fatal(err)
		}
		maxDepth = max(maxDepth, a.Stats().QueueDepth)
		if i%10 == 0 {
			time.Sleep(5 * time.Millisecond) // let the relay write a few bursts
		}
	}
	for range 50 {
		maxDepth = max(maxDepth, a.Stats().QueueDepth)
		time.Sleep(10 * time.Millisecond)
	}
	w.converges(mem, declared...)
	st := a.Stats()
	t.Logf("%d churns: max queue depth %d, %d events (%d coalesced in the agent), %d flushes, %d change sets, throttled %v",
		churns, maxDepth, st.Events, st.Coalesced, st.Flushes, st.Applies, st.Throttled.Round(time.Millisecond))
	if maxDepth > len(declared) {
		t.Fatalf("queue depth reached %d, more than the %d services", maxDepth, len(declared))
	}
	if st.Throttled == 0 {
		t.Error("the token bucket never throttled: the test did not exercise flow control")
	}
	if strings.Contains(fmt.Sprint(st.BatchEntries), "NaN") {
		t.Error("batch histogram broken")
	}
}

// vipRange is the range read (as etcdcount records it) that resolves the
// IPv4 VIP vip: the vips/ keys of its /24.
func vipRange(vip string) string {
	a := netip.MustParseAddr(vip).As4()
	return space.VIP(fmt.Sprintf("%d.%d.%d.", a[0], a[1], a[2])) + "*"
}
