package roles

import (
	"context"
	"net/netip"
	"testing"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/scale-tests/internal/gate"
	"github.com/meshrelay/meshrelay/scale-tests/internal/workload"
)

// TestCheckSeesEveryApply: a node that matched is not dumped again until
// it applies something, and then a change that breaks it is found; a new
// expected state is compared again even without applies.
func TestCheckSeesEveryApply(t *testing.T) {
	ctx := context.Background()
	p := newPool(PoolConfig{})
	n := p.addNode(0, workload.Node{Name: "node-a", Services: []int{0}}, datapath.MemoryOptions{})
	state := datapath.NewState()
	be := netip.AddrPortFrom(netip.MustParseAddr("127.90.0.1"), 8080)
	state.PutBackend(1, be)
	vip := netip.AddrPortFrom(netip.MustParseAddr("127.77.0.1"), 80)
	state.PutFrontend(datapath.NewFrontendKey(vip, datapath.TCP), 1,
		datapath.AssignSlots(nil, []datapath.WeightedBackend{{ID: 1, Weight: 1}}, 0))
	expect := func(st datapath.State) {
		p.mu.Lock()
		p.want = map[int]gate.WantService{0: {Index: 0, Frontends: gate.StateOf(st)}}
		p.wantGen++
		p.mu.Unlock()
	}
	check := func(what string, mismatched int) {
		t.Helper()
		res, err := p.check(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		if res.Mismatched != mismatched {
			t.Fatalf("%s: %d nodes mismatched (%v), want %d", what, res.Mismatched, res.Diffs, mismatched)
		}
	}

	expect(state)
	check("nothing applied", 1)
	if _, err := n.probe.Apply(ctx, datapath.DiffStates(datapath.NewState(), state)); err != nil {
		t.Fatal(err)
	}
	check("state applied", 0)
	check("nothing applied since", 0)

	if _, err := n.probe.Apply(ctx, datapath.DiffStates(state, datapath.NewState())); err != nil {
		t.Fatal(err)
	}
	check("state removed after a match", 1)
	if _, err := n.probe.Apply(ctx, datapath.DiffStates(datapath.NewState(), state)); err != nil {
		t.Fatal(err)
	}
	check("state applied again", 0)

	expect(datapath.NewState())
	check("new expected state, no apply", 1)
}

// TestStatsFollowApplies: the pool's stats reuse a node's map counters only
// while it applied nothing (a write after a read is counted), and light
// stats leave the nodes' own counters out.
func TestStatsFollowApplies(t *testing.T) {
	ctx := context.Background()
	p := newPool(PoolConfig{})
	n := p.addNode(0, workload.Node{Name: "node-a"}, datapath.MemoryOptions{})
	totals := 0
	p.totals = func(*PoolStats) { totals++ }
	be := func(i byte) datapath.ChangeSet {
		st := datapath.NewState()
		st.PutBackend(uint32(i), netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 90, 0, i}), 8080))
		return datapath.DiffStates(datapath.NewState(), st)
	}
	if st := p.stats(false); st.Updates != 0 || totals != 1 {
		t.Fatalf("before any apply: %d updates, totals asked %d times; want 0 and 1", st.Updates, totals)
	}
	for i := byte(1); i <= 3; i++ {
		if _, err := n.probe.Apply(ctx, be(i)); err != nil {
			t.Fatal(err)
		}
		if st := p.stats(true); st.Updates != uint64(i) || st.Entries != int64(i) {
			t.Fatalf("after %d applies: %d updates, %d entries", i, st.Updates, st.Entries)
		}
	}
	if totals != 1 || p.stats(true).DeletesByMap != nil {
		t.Fatalf("light stats asked the nodes' totals (%d times) or split deletes by map", totals-1)
	}
}
