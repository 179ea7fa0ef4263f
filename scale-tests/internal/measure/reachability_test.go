package measure

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// fullReach recomputes reachable slot counts per address from scratch.
func fullReach(st datapath.State) map[netip.Addr]int {
	out := map[netip.Addr]int{}
	for _, fv := range st.Frontends {
		for i := uint32(0); i < fv.SlotCount; i++ {
			sv, ok := st.Slots[datapath.SlotKey{FrontendId: fv.FrontendId, Slot: i}]
			if !ok {
				continue
			}
			if bv, ok := st.Backends[datapath.BackendKey{BackendId: sv.BackendId}]; ok {
				out[bv.AddrPort().Addr()]++
			}
		}
	}
	return out
}

func randomState(r *rand.Rand) datapath.State {
	st := datapath.NewState()
	ids := map[uint32]bool{}
	for f := uint32(1); f <= uint32(1+r.IntN(6)); f++ {
		var table []uint32
		for range 1 + r.IntN(5) {
			id := uint32(1 + r.IntN(10))
			if !ids[id] {
				// Addresses change with the id's draw, as reused ids do.
				st.PutBackend(id, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(r.IntN(3)), byte(id)}), 8080))
				ids[id] = true
			}
			table = append(table, id)
		}
		st.PutFrontend(datapath.NewFrontendKey(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, 0, byte(f + uint32(r.IntN(3)))}), 80), datapath.TCP), f, table)
	}
	return st
}

// TestReachabilityIncremental: the incremental counts equal a full
// recomputation after every change set of a random sequence, whether the
// change set is applied whole or split into now + garbage.
func TestReachabilityIncremental(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for seq := 0; seq < 50; seq++ {
		reach := newReachability()
		have := datapath.NewState()
		for step := 0; step < 20; step++ {
			want := randomState(r)
			cs := datapath.DiffStates(have, want)
			parts := []datapath.ChangeSet{cs}
			if step%2 == 1 {
				now, garbage := datapath.SplitGarbage(cs)
				parts = []datapath.ChangeSet{now, garbage}
			}
			for _, p := range parts {
				before := map[netip.Addr]int{}
				for a, n := range reach.addrRefs {
					before[a] = n
				}
				gained, lost := reach.apply(p)
				full := fullReach(reach.state)
				if len(full) != len(reach.addrRefs) {
					t.Fatalf("seq %d step %d: %d reachable addresses, full recount %d", seq, step, len(reach.addrRefs), len(full))
				}
				for a, n := range full {
					if reach.addrRefs[a] != n {
						t.Fatalf("seq %d step %d: %s has %d refs, full recount %d", seq, step, a, reach.addrRefs[a], n)
					}
				}
				for _, a := range gained {
					if before[a] != 0 || full[a] == 0 {
						t.Fatalf("gained %s wrongly", a)
					}
				}
				for _, a := range lost {
					if before[a] == 0 || full[a] != 0 {
						t.Fatalf("lost %s wrongly", a)
					}
				}
			}
			have = want
		}
	}
}
