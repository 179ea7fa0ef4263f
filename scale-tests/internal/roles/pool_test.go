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
