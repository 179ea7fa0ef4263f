package datapath

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
)

// State is the full content of the three agent-written maps: what the agent
// wants the kernel to hold, or what Dump read back.
//
// A consistent State (see Check) is one in which every frontend's slots
// 0..SlotCount-1 exist and every slot's backend exists; only such states
// give make-before-break change sets.
type State struct {
	Frontends map[FrontendKey]FrontendValue
	Slots     map[SlotKey]SlotValue
	Backends  map[BackendKey]BackendValue
}

// NewState returns an empty State with its maps allocated.
func NewState() State {
	return State{
		Frontends: make(map[FrontendKey]FrontendValue),
		Slots:     make(map[SlotKey]SlotValue),
		Backends:  make(map[BackendKey]BackendValue),
	}
}

// Len returns the number of entries in all three maps.
func (s State) Len() int { return len(s.Frontends) + len(s.Slots) + len(s.Backends) }

// Clone returns a deep copy of s.
func (s State) Clone() State {
	c := NewState()
	maps.Copy(c.Frontends, s.Frontends)
	maps.Copy(c.Slots, s.Slots)
	maps.Copy(c.Backends, s.Backends)
	return c
}

// Equal reports whether s and o hold the same entries.
func (s State) Equal(o State) bool {
	return maps.Equal(s.Frontends, o.Frontends) && maps.Equal(s.Slots, o.Slots) && maps.Equal(s.Backends, o.Backends)
}

// PutBackend sets backend id to addr (address and target port).
func (s State) PutBackend(id uint32, addr netip.AddrPort) {
	s.Backends[BackendKey{BackendId: id}] = NewBackendValue(addr)
}

// PutFrontend sets frontend key to id with one slot per element of table
// (slot i points at backend table[i]), and removes the frontend's slots
// beyond len(table). The table normally comes from AssignSlots.
func (s State) PutFrontend(key FrontendKey, id uint32, table []uint32) {
	old, had := s.Frontends[key]
	if had && old.FrontendId == id {
		for i := uint32(len(table)); i < old.SlotCount; i++ {
			delete(s.Slots, SlotKey{FrontendId: id, Slot: i})
		}
	} else if had {
		s.DeleteFrontend(key)
	}
	s.Frontends[key] = FrontendValue{FrontendId: id, SlotCount: uint32(len(table))}
	for i, b := range table {
		s.Slots[SlotKey{FrontendId: id, Slot: uint32(i)}] = SlotValue{BackendId: b}
	}
}

// DeleteFrontend removes frontend key and its slots (not its backends,
// which other frontends may share).
func (s State) DeleteFrontend(key FrontendKey) {
	v, ok := s.Frontends[key]
	if !ok {
		return
	}
	delete(s.Frontends, key)
	for i := uint32(0); i < v.SlotCount; i++ {
		delete(s.Slots, SlotKey{FrontendId: v.FrontendId, Slot: i})
	}
}

// SlotTable returns the backend ids of frontend key's slots in slot order,
// or nil if s has no such frontend; it is the prev argument of AssignSlots.
func (s State) SlotTable(key FrontendKey) []uint32 {
	v, ok := s.Frontends[key]
	if !ok || v.SlotCount == 0 {
		return nil
	}
	table := make([]uint32, 0, v.SlotCount)
	for i := uint32(0); i < v.SlotCount; i++ {
		sv, ok := s.Slots[SlotKey{FrontendId: v.FrontendId, Slot: i}]
		if !ok {
			return table
		}
		table = append(table, sv.BackendId)
	}
	return table
}

// Check returns an error describing the first inconsistencies of s: a
// frontend slot or a slot's backend that is missing, a slot count above
// MaxTableSlots, or two frontends sharing one frontend id. Unreferenced slots
// and backends are allowed.
func (s State) Check() error {
	var errs []error
	ids := make(map[uint32]FrontendKey, len(s.Frontends))
	for k, v := range s.Frontends {
		if other, dup := ids[v.FrontendId]; dup {
			errs = append(errs, fmt.Errorf("frontends %s and %s share id %d", k, other, v.FrontendId))
		}
		ids[v.FrontendId] = k
		if v.SlotCount > MaxTableSlots {
			errs = append(errs, fmt.Errorf("frontend %s: %d slots, more than %d", k, v.SlotCount, MaxTableSlots))
			continue
		}
		for i := uint32(0); i < v.SlotCount; i++ {
			sv, ok := s.Slots[SlotKey{FrontendId: v.FrontendId, Slot: i}]
			if !ok {
				errs = append(errs, fmt.Errorf("frontend %s: slot %d missing", k, i))
				continue
			}
			if _, ok := s.Backends[BackendKey{BackendId: sv.BackendId}]; !ok {
				errs = append(errs, fmt.Errorf("frontend %s: slot %d: backend %d missing", k, i, sv.BackendId))
			}
		}
		if len(errs) >= 10 {
			break
		}
	}
	return errors.Join(errs...)
}
