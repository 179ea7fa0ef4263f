package datapath

import (
	"bytes"
	"cmp"
	"slices"
)

// ChangeSet is what one Apply writes. Apply writes its fields in the order
// they are declared, which is make-before-break:
//
//  1. DeleteFrontends, DeleteSlots, DeleteBackends: removals that nothing
//     references once the removed frontends are gone (a removed service's
//     frontends, their slots, backends only those slots used). They go
//     first so a flush that replaces services frees map capacity before it
//     needs it ("removals before additions").
//  2. UpsertBackends, UpsertSlots, UpsertFrontends: additions and changes,
//     backends before the slots that point at them, slots before the
//     frontend (and slot count) that makes them reachable.
//  3. TrimSlots, TrimBackends: removals the old state still referenced
//     until step 2 rewrote the referrer: slots beyond a shrunk frontend's
//     new count, backends replaced in a surviving frontend's slots.
//
// Given a consistent old and new State, no frontend points at a missing
// slot and no slot at a missing backend at any instant: the programs
// always find a complete old or new service. DiffStates sorts every change
// into the right field; a hand-built ChangeSet must do the same (when in
// doubt, a removal belongs in step 3, which is always safe).
//
// Ids: a frontend id or backend id names one frontend or one (address,
// target port) for as long as it is in the maps. The agent must not give
// an id that the old state still uses to something else in the same
// change set (the programs would briefly route the old frontend's
// connections to the new one's backends); it recycles an id only after
// the Apply that removed it.
type ChangeSet struct {
	DeleteFrontends []FrontendKey
	DeleteSlots     []SlotKey
	DeleteBackends  []BackendKey

	UpsertBackends  []Backend
	UpsertSlots     []Slot
	UpsertFrontends []Frontend

	TrimSlots    []SlotKey
	TrimBackends []BackendKey
}

// Len returns the number of entries the change set writes.
func (cs ChangeSet) Len() int {
	return len(cs.DeleteFrontends) + len(cs.DeleteSlots) + len(cs.DeleteBackends) +
		len(cs.UpsertBackends) + len(cs.UpsertSlots) + len(cs.UpsertFrontends) +
		len(cs.TrimSlots) + len(cs.TrimBackends)
}

// Empty reports whether the change set writes nothing.
func (cs ChangeSet) Empty() bool { return cs.Len() == 0 }

// ApplyTo applies cs to s in Apply's order, as a model of the kernel maps.
func (cs ChangeSet) ApplyTo(s State) {
	for _, k := range cs.DeleteFrontends {
		delete(s.Frontends, k)
	}
	for _, k := range cs.DeleteSlots {
		delete(s.Slots, k)
	}
	for _, k := range cs.DeleteBackends {
		delete(s.Backends, k)
	}
	for _, e := range cs.UpsertBackends {
		s.Backends[e.Key] = e.Value
	}
	for _, e := range cs.UpsertSlots {
		s.Slots[e.Key] = e.Value
	}
	for _, e := range cs.UpsertFrontends {
		s.Frontends[e.Key] = e.Value
	}
	for _, k := range cs.TrimSlots {
		delete(s.Slots, k)
	}
	for _, k := range cs.TrimBackends {
		delete(s.Backends, k)
	}
}

// DiffStates returns the change set that turns have into want: only real
// changes (identical states give an empty ChangeSet; one changed backend a
// handful of entries), each in the step of ChangeSet that keeps the
// datapath make-before-break, sorted for reproducible output. It is pure.
func DiffStates(have, want State) ChangeSet {
	var cs ChangeSet

	// Step 1 frontends; remember which frontend ids still reference which
	// slots after them: the surviving frontends with their old counts.
	surviving := make(map[uint32]uint32, len(have.Frontends))
	for k, v := range have.Frontends {
		if _, ok := want.Frontends[k]; !ok {
			cs.DeleteFrontends = append(cs.DeleteFrontends, k)
			continue
		}
		surviving[v.FrontendId] = max(surviving[v.FrontendId], v.SlotCount)
	}

	// Slots: removed ones are early when no surviving frontend reaches them.
	// A backend stays referenced (until step 2 or 3) by every old slot that
	// is not removed early.
	stillUsed := make(map[uint32]struct{})
	for k, v := range have.Slots {
		nv, keep := want.Slots[k]
		switch {
		case keep:
			stillUsed[v.BackendId] = struct{}{}
			if nv != v {
				cs.UpsertSlots = append(cs.UpsertSlots, Slot{Key: k, Value: nv})
			}
		case k.Slot >= surviving[k.FrontendId]:
			cs.DeleteSlots = append(cs.DeleteSlots, k)
		default:
			stillUsed[v.BackendId] = struct{}{}
			cs.TrimSlots = append(cs.TrimSlots, k)
		}
	}
	for k, v := range want.Slots {
		if _, ok := have.Slots[k]; !ok {
			cs.UpsertSlots = append(cs.UpsertSlots, Slot{Key: k, Value: v})
		}
	}

	for k, v := range have.Backends {
		nv, keep := want.Backends[k]
		switch {
		case keep:
			if nv != v {
				cs.UpsertBackends = append(cs.UpsertBackends, Backend{Key: k, Value: nv})
			}
		default:
			if _, used := stillUsed[k.BackendId]; used {
				cs.TrimBackends = append(cs.TrimBackends, k)
			} else {
				cs.DeleteBackends = append(cs.DeleteBackends, k)
			}
		}
	}
	for k, v := range want.Backends {
		if _, ok := have.Backends[k]; !ok {
			cs.UpsertBackends = append(cs.UpsertBackends, Backend{Key: k, Value: v})
		}
	}

	for k, v := range want.Frontends {
		if ov, ok := have.Frontends[k]; !ok || ov != v {
			cs.UpsertFrontends = append(cs.UpsertFrontends, Frontend{Key: k, Value: v})
		}
	}

	cs.Sort()
	return cs
}

// Sort orders the keys of each step of cs as DiffStates does, for
// reproducible output; a diff computed another way (nodemodel's
// incremental one) sorts with it.
func (cs *ChangeSet) Sort() {
	slices.SortFunc(cs.DeleteFrontends, compareFrontendKeys)
	slices.SortFunc(cs.DeleteSlots, compareSlotKeys)
	slices.SortFunc(cs.DeleteBackends, compareBackendKeys)
	slices.SortFunc(cs.UpsertBackends, func(a, b Backend) int { return compareBackendKeys(a.Key, b.Key) })
	slices.SortFunc(cs.UpsertSlots, func(a, b Slot) int { return compareSlotKeys(a.Key, b.Key) })
	slices.SortFunc(cs.UpsertFrontends, func(a, b Frontend) int { return compareFrontendKeys(a.Key, b.Key) })
	slices.SortFunc(cs.TrimSlots, compareSlotKeys)
	slices.SortFunc(cs.TrimBackends, compareBackendKeys)
}

func compareFrontendKeys(a, b FrontendKey) int {
	if c := bytes.Compare(a.Addr[:], b.Addr[:]); c != 0 {
		return c
	}
	if c := cmp.Compare(fromNetworkOrder(a.Port), fromNetworkOrder(b.Port)); c != 0 {
		return c
	}
	return cmp.Compare(a.Proto, b.Proto)
}

func compareSlotKeys(a, b SlotKey) int {
	if c := cmp.Compare(a.FrontendId, b.FrontendId); c != 0 {
		return c
	}
	return cmp.Compare(a.Slot, b.Slot)
}

func compareBackendKeys(a, b BackendKey) int { return cmp.Compare(a.BackendId, b.BackendId) }

// SplitGarbage splits cs into what to write now and garbage that may wait:
// the deletes of slots and backends that nothing references once cs is
// applied, for each of those two maps that cs also upserts into. Writing
// the garbage in a later change set (one with no upserts into that map)
// keeps every change set at one write syscall per map for a map that both
// gains and loses entries; until then the unreferenced entries only take
// room. Applying now and then garbage leaves the maps as applying cs would.
func SplitGarbage(cs ChangeSet) (now, garbage ChangeSet) {
	now = cs
	if len(cs.UpsertSlots) > 0 && len(cs.DeleteSlots)+len(cs.TrimSlots) > 0 {
		garbage.DeleteSlots, garbage.TrimSlots = cs.DeleteSlots, cs.TrimSlots
		now.DeleteSlots, now.TrimSlots = nil, nil
	}
	if len(cs.UpsertBackends) > 0 && len(cs.DeleteBackends)+len(cs.TrimBackends) > 0 {
		garbage.DeleteBackends, garbage.TrimBackends = cs.DeleteBackends, cs.TrimBackends
		now.DeleteBackends, now.TrimBackends = nil, nil
	}
	return now, garbage
}
