package measure

import (
	"net/netip"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// reachability mirrors a node's maps and counts, per backend address, the
// slots that point at it from a frontend (within the frontend's slot
// count): the destinations connections can reach. It is updated from each
// change set in time proportional to the change set, not to the maps.
type reachability struct {
	state    datapath.State
	byID     map[uint32]uint32 // frontend id → slot count
	idRefs   map[uint32]int    // backend id → reachable slots
	addrRefs map[netip.Addr]int

	// Scratch of apply, cleared and reused by every call.
	touched map[datapath.SlotKey]struct{}
	change  map[netip.Addr]int
}

func newReachability() *reachability {
	return &reachability{state: datapath.NewState(), byID: map[uint32]uint32{}, idRefs: map[uint32]int{}, addrRefs: map[netip.Addr]int{},
		touched: map[datapath.SlotKey]struct{}{}, change: map[netip.Addr]int{}}
}

// reachable returns the backend id slot k points at, if a frontend reaches it.
func (r *reachability) reachable(k datapath.SlotKey) (uint32, bool) {
	n, ok := r.byID[k.FrontendId]
	if !ok || k.Slot >= n {
		return 0, false
	}
	sv, ok := r.state.Slots[k]
	return sv.BackendId, ok
}

func (r *reachability) Addr(id uint32) (netip.Addr, bool) {
	bv, ok := r.state.Backends[datapath.BackendKey{BackendId: id}]
	return bv.AddrPort().Addr(), ok
}

// ref adds d reachable slots to backend id and to its address.
func (r *reachability) ref(id uint32, d int, change map[netip.Addr]int) {
	r.idRefs[id] += d
	if r.idRefs[id] == 0 {
		delete(r.idRefs, id)
	}
	if a, ok := r.Addr(id); ok {
		r.addAddr(a, d, change)
	}
}

// addAddr adds d to a's count; change keeps each address's count from
// before the change set (the first time it is touched).
func (r *reachability) addAddr(a netip.Addr, d int, change map[netip.Addr]int) {
	if _, seen := change[a]; !seen {
		change[a] = r.addrRefs[a]
	}
	r.addrRefs[a] += d
	if r.addrRefs[a] == 0 {
		delete(r.addrRefs, a)
	}
}

// apply applies cs and returns the addresses that became reachable and
// those that stopped being reachable.
func (r *reachability) apply(cs datapath.ChangeSet) (gained, lost []netip.Addr) {
	// The slots whose reachability or target cs may change.
	touched := r.touched
	clear(touched)
	frontend := func(id, count uint32) {
		for i := uint32(0); i < count; i++ {
			touched[datapath.SlotKey{FrontendId: id, Slot: i}] = struct{}{}
		}
	}
	r.replaced(cs, func(v datapath.FrontendValue) { frontend(v.FrontendId, v.SlotCount) })
	for _, f := range cs.UpsertFrontends {
		frontend(f.Value.FrontendId, f.Value.SlotCount)
	}
	for _, ks := range [][]datapath.SlotKey{cs.DeleteSlots, cs.TrimSlots} {
		for _, k := range ks {
			touched[k] = struct{}{}
		}
	}
	for _, sl := range cs.UpsertSlots {
		touched[sl.Key] = struct{}{}
	}
	change := r.change
	clear(change)
	for k := range touched {
		if id, ok := r.reachable(k); ok {
			r.ref(id, -1, change)
		}
	}
	// A backend id written with a new address moves its remaining refs.
	for _, b := range cs.UpsertBackends {
		if n := r.idRefs[b.Key.BackendId]; n > 0 {
			if old, ok := r.Addr(b.Key.BackendId); ok && old != b.Value.AddrPort().Addr() {
				r.addAddr(old, -n, change)
				r.addAddr(b.Value.AddrPort().Addr(), n, change)
			}
		}
	}
	r.unindex(cs)
	cs.ApplyTo(r.state)
	for _, f := range cs.UpsertFrontends {
		r.byID[f.Value.FrontendId] = f.Value.SlotCount
	}
	for k := range touched {
		if id, ok := r.reachable(k); ok {
			r.ref(id, 1, change)
		}
	}
	for a, before := range change {
		switch after := r.addrRefs[a]; {
		case before == 0 && after > 0:
			gained = append(gained, a)
		case before > 0 && after == 0:
			lost = append(lost, a)
		}
	}
	return gained, lost
}

// replaced calls fn with the value held now of every frontend cs deletes
// or replaces (before cs is applied).
func (r *reachability) replaced(cs datapath.ChangeSet, fn func(datapath.FrontendValue)) {
	for _, k := range cs.DeleteFrontends {
		if v, ok := r.state.Frontends[k]; ok {
			fn(v)
		}
	}
	for _, f := range cs.UpsertFrontends {
		if v, ok := r.state.Frontends[f.Key]; ok {
			fn(v)
		}
	}
}

// unindex removes from the frontend id → slot count index the frontends
// cs deletes or replaces, before cs is applied; apply then adds those cs
// writes. Frontend ids are unique per frontend key (nodemodel.IDs).
func (r *reachability) unindex(cs datapath.ChangeSet) {
	r.replaced(cs, func(v datapath.FrontendValue) { delete(r.byID, v.FrontendId) })
}

// reset replaces the mirror by st and reports the differences.
func (r *reachability) reset(st datapath.State) (gained, lost []netip.Addr) {
	old := r.addrRefs
	n := newReachability()
	cs := datapath.DiffStates(datapath.NewState(), st)
	n.apply(cs)
	*r = *n
	for a := range r.addrRefs {
		if old[a] == 0 {
			gained = append(gained, a)
		}
	}
	for a := range old {
		if r.addrRefs[a] == 0 {
			lost = append(lost, a)
		}
	}
	return gained, lost
}
