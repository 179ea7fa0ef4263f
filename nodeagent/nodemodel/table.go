package nodemodel

import (
	"net/netip"
	"slices"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// Table is the content of one node's datapath maps, kept twice: Applied,
// what the datapath holds as far as the agent knows, and Want, what it
// should hold. Set and Remove change Want one service at a time and record
// the keys they touch; Pending returns the difference of those keys only
// (datapath.DiffStates of the touched part of both states), so the cost of
// a change is proportional to the change, not to the table. After the
// datapath applied it, Commit makes it part of Applied.
//
// Each frontend key belongs to at most one service. Frontends of the
// initial (dumped) state that no service claimed yet are orphans: they stay
// in Want, and so in the datapath, until SweepOrphans.
//
// A Table is not safe for concurrent use.
type Table struct {
	applied datapath.State
	want    datapath.State
	ids     *IDs

	owner map[datapath.FrontendKey]keyspace.Service
	owned map[keyspace.Service][]datapath.FrontendKey

	// Keys touched since the last Commit. Slots of touched frontends are
	// derived from the frontends' values in both states; touchedSlots
	// holds slots touched on their own (stray ones).
	touchedFrontends map[datapath.FrontendKey]struct{}
	touchedSlots     map[datapath.SlotKey]struct{}
	touchedBackends  map[uint32]struct{}
	weight           int  // estimate of the entries Pending writes
	full             bool // Applied is unreliable: Pending diffs everything
	diff             pendingDiff
}

// NewTable returns a table whose Applied and Want are st (a dump of the
// datapath, or datapath.NewState() for an empty one), with ids rebuilt from
// it, so that claiming st's frontends again with identical content writes
// nothing. Every frontend of st is an orphan until a service claims it.
func NewTable(st datapath.State) *Table {
	if st.Frontends == nil {
		st = datapath.NewState()
	}
	return &Table{
		applied:          st,
		want:             st.Clone(),
		ids:              RebuildIDs(st),
		owner:            map[datapath.FrontendKey]keyspace.Service{},
		owned:            map[keyspace.Service][]datapath.FrontendKey{},
		touchedFrontends: map[datapath.FrontendKey]struct{}{},
		touchedSlots:     map[datapath.SlotKey]struct{}{},
		touchedBackends:  map[uint32]struct{}{},
	}
}

// Set makes fes the frontends of svc: frontends svc had and fes lacks are
// removed, the others are written with slot tables that keep as many of
// their slots as possible (datapath.AssignSlots). A frontend key owned by
// another service is left alone and returned in conflicts.
func (t *Table) Set(svc keyspace.Service, fes []Frontend) (conflicts []datapath.FrontendKey) {
	keep := make(map[datapath.FrontendKey]struct{}, len(fes))
	keys := make([]datapath.FrontendKey, 0, len(fes))
	for _, fe := range fes {
		if o, ok := t.owner[fe.Key]; ok && o != svc {
			conflicts = append(conflicts, fe.Key)
			continue
		}
		if _, dup := keep[fe.Key]; dup {
			continue
		}
		keep[fe.Key] = struct{}{}
		keys = append(keys, fe.Key)
		t.putFrontend(fe)
		t.owner[fe.Key] = svc
	}
	for _, k := range t.owned[svc] {
		if _, ok := keep[k]; !ok {
			t.deleteFrontend(k)
			delete(t.owner, k)
		}
	}
	if len(keys) == 0 {
		delete(t.owned, svc)
	} else {
		t.owned[svc] = keys
	}
	return conflicts
}

// Remove removes every frontend of svc.
func (t *Table) Remove(svc keyspace.Service) {
	for _, k := range t.owned[svc] {
		t.deleteFrontend(k)
		delete(t.owner, k)
	}
	delete(t.owned, svc)
}

// Frontends returns the frontend keys svc owns.
func (t *Table) Frontends(svc keyspace.Service) []datapath.FrontendKey {
	return slices.Clone(t.owned[svc])
}

// Owner returns the service that owns frontend key.
func (t *Table) Owner(key datapath.FrontendKey) (keyspace.Service, bool) {
	s, ok := t.owner[key]
	return s, ok
}

// OwnerOfID returns the service that owns the frontend whose id is id (as
// the programs' usage map reports it).
func (t *Table) OwnerOfID(id uint32) (keyspace.Service, bool) {
	k, ok := t.ids.FrontendKey(id)
	if !ok {
		return keyspace.Service{}, false
	}
	return t.Owner(k)
}

// Services returns the number of services that own frontends.
func (t *Table) Services() int { return len(t.owned) }

// Orphans returns the frontends of Want that no service owns, sorted.
func (t *Table) Orphans() []datapath.FrontendKey {
	var out []datapath.FrontendKey
	for k := range t.want.Frontends {
		if _, ok := t.owner[k]; !ok {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, CompareKeys)
	return out
}

// SweepOrphans removes from Want what no service owns: orphan frontends,
// slots no frontend reaches, backends no slot uses.
func (t *Table) SweepOrphans() {
	for _, k := range t.Orphans() {
		t.deleteFrontend(k)
	}
	for sk := range t.want.Slots {
		v, ok := t.ids.FrontendKey(sk.FrontendId)
		if ok {
			if fv, ok := t.want.Frontends[v]; ok && fv.FrontendId == sk.FrontendId && sk.Slot < fv.SlotCount {
				continue
			}
		}
		delete(t.want.Slots, sk)
		t.touchedSlots[sk] = struct{}{}
		t.weight++
	}
	t.ids.ReleaseStray()
	for _, id := range t.ids.DropUnreferenced() {
		delete(t.want.Backends, datapath.BackendKey{BackendId: id})
		t.touchBackend(id)
	}
}

// Pending returns the change set that turns Applied into Want. Only keys
// touched since the last Commit are compared (all of them after Reset).
func (t *Table) Pending() datapath.ChangeSet {
	if t.full {
		return datapath.DiffStates(t.applied, t.want)
	}
	// DiffStates(have, want) of the two states restricted to the touched
	// keys, computed in place: the touched frontends, their slots (in
	// Applied, and in Want when the frontend changed), the stray touched
	// slots, the touched backends and those the slots reference.
	var cs datapath.ChangeSet
	d := &t.diff
	d.reset()
	for k := range t.touchedFrontends {
		av, aok := t.applied.Frontends[k]
		wv, wok := t.want.Frontends[k]
		switch {
		case aok && !wok:
			cs.DeleteFrontends = append(cs.DeleteFrontends, k)
		case aok:
			d.surviving[av.FrontendId] = max(d.surviving[av.FrontendId], av.SlotCount)
		}
		if aok {
			d.cover(av)
		}
		if wok && (!aok || wv != av) { // unchanged: the same slot keys
			cs.UpsertFrontends = append(cs.UpsertFrontends, datapath.Frontend{Key: k, Value: wv})
			d.cover(wv)
		}
	}
	for id := range t.touchedBackends {
		d.backends[id] = false
	}
	for fid, n := range d.covered {
		for i := range n {
			t.diffSlot(&cs, datapath.SlotKey{FrontendId: fid, Slot: i})
		}
	}
	for sk := range t.touchedSlots {
		if sk.Slot >= d.covered[sk.FrontendId] {
			t.diffSlot(&cs, sk)
		}
	}
	for id, used := range d.backends {
		bk := datapath.BackendKey{BackendId: id}
		v, aok := t.applied.Backends[bk]
		nv, wok := t.want.Backends[bk]
		switch {
		case wok && (!aok || nv != v):
			cs.UpsertBackends = append(cs.UpsertBackends, datapath.Backend{Key: bk, Value: nv})
		case aok && !wok && used:
			cs.TrimBackends = append(cs.TrimBackends, bk)
		case aok && !wok:
			cs.DeleteBackends = append(cs.DeleteBackends, bk)
		}
	}
	cs.Sort()
	return cs
}

// diffSlot adds slot sk's step to cs, as DiffStates does: removed slots
// are early when no surviving frontend reaches them, and a backend stays
// referenced by every old slot not removed early.
func (t *Table) diffSlot(cs *datapath.ChangeSet, sk datapath.SlotKey) {
	d := &t.diff
	v, aok := t.applied.Slots[sk]
	nv, wok := t.want.Slots[sk]
	if wok {
		d.reference(nv.BackendId, false)
	}
	switch {
	case aok && wok:
		d.reference(v.BackendId, true)
		if nv != v {
			cs.UpsertSlots = append(cs.UpsertSlots, datapath.Slot{Key: sk, Value: nv})
		}
	case aok && sk.Slot >= d.surviving[sk.FrontendId]:
		d.reference(v.BackendId, false)
		cs.DeleteSlots = append(cs.DeleteSlots, sk)
	case aok:
		d.reference(v.BackendId, true)
		cs.TrimSlots = append(cs.TrimSlots, sk)
	case wok:
		cs.UpsertSlots = append(cs.UpsertSlots, datapath.Slot{Key: sk, Value: nv})
	}
}

// pendingDiff is the scratch space of Table.Pending, kept between calls so
// that a small change allocates no maps.
type pendingDiff struct {
	// covered holds, per frontend id, the slots [0, n) the touched
	// frontends' values span (both tables of a frontend start at slot 0,
	// so their union is the longer one).
	covered   map[uint32]uint32
	backends  map[uint32]bool   // backend id → an old slot not removed early still references it
	surviving map[uint32]uint32 // frontend id → slot count of a frontend in both states
}

// reset empties the scratch maps.
func (d *pendingDiff) reset() {
	d.covered = emptied(d.covered)
	d.backends = emptied(d.backends)
	d.surviving = emptied(d.surviving)
}

// cover adds the slots of a frontend's value.
func (d *pendingDiff) cover(v datapath.FrontendValue) {
	if v.SlotCount > d.covered[v.FrontendId] {
		d.covered[v.FrontendId] = v.SlotCount
	}
}

// reference adds backend id to the diff, still used when used.
func (d *pendingDiff) reference(id uint32, used bool) {
	if used {
		d.backends[id] = true
	} else if _, ok := d.backends[id]; !ok {
		d.backends[id] = false
	}
}

// Retain keeps the keys of cs in the next Pending: a caller that applied
// and committed only part of a Pending change set (see datapath.SplitGarbage)
// retains the rest, whose entries are still in Applied and not in Want.
func (t *Table) Retain(cs datapath.ChangeSet) {
	for _, ks := range [][]datapath.SlotKey{cs.DeleteSlots, cs.TrimSlots} {
		for _, k := range ks {
			if _, ok := t.touchedSlots[k]; !ok {
				t.touchedSlots[k] = struct{}{}
				t.weight++
			}
		}
	}
	for _, ks := range [][]datapath.BackendKey{cs.DeleteBackends, cs.TrimBackends} {
		for _, k := range ks {
			t.touchBackend(k.BackendId)
		}
	}
}

// PendingSize estimates the number of entries Pending would write (an
// upper bound, without computing it).
func (t *Table) PendingSize() int {
	if t.full {
		return t.applied.Len() + t.want.Len()
	}
	return t.weight
}

// Commit records that the datapath applied cs (which Pending returned):
// Applied becomes Want for the touched keys, and the ids released since
// the last Commit become reusable.
func (t *Table) Commit(cs datapath.ChangeSet) {
	cs.ApplyTo(t.applied)
	t.ids.Recycle()
	t.resetTouched()
	t.weight = 0
	t.full = false
}

// Reset replaces Applied by st, a fresh dump of the datapath, after an
// Apply failed part way: the next Pending compares the whole states. Ids
// released meanwhile stay unusable until the next Commit.
func (t *Table) Reset(st datapath.State) {
	if st.Frontends == nil {
		st = datapath.NewState()
	}
	t.applied = st
	t.full = true
}

// Applied returns the state the datapath holds as far as the table knows.
// It is the table's own: do not modify it.
func (t *Table) Applied() datapath.State { return t.applied }

// Want returns the state the datapath should hold. It is the table's own:
// do not modify it.
func (t *Table) Want() datapath.State { return t.want }

// IDs returns the table's id allocator, for inspection.
func (t *Table) IDs() *IDs { return t.ids }

// putFrontend writes fe into Want: its id, its backends (one reference per
// distinct backend in its slot table) and a slot table derived from the
// one it has.
func (t *Table) putFrontend(fe Frontend) {
	id := t.ids.Frontend(fe.Key)
	prev := t.want.SlotTable(fe.Key)
	if old, ok := t.want.Frontends[fe.Key]; ok && old.FrontendId != id {
		prev = nil // not this id's slots (cannot happen with a consistent state)
	}
	// One reference per distinct backend address.
	wbs := make([]datapath.WeightedBackend, 0, len(fe.Backends))
	seen := make(map[netip.AddrPort]struct{}, len(fe.Backends))
	for _, b := range fe.Backends {
		if _, dup := seen[b.Addr]; dup {
			continue
		}
		seen[b.Addr] = struct{}{}
		bid := t.ids.AcquireBackend(b.Addr)
		wbs = append(wbs, datapath.WeightedBackend{ID: bid, Weight: b.Weight})
		bk := datapath.BackendKey{BackendId: bid}
		if _, ok := t.want.Backends[bk]; !ok {
			t.want.PutBackend(bid, b.Addr)
			t.touchBackend(bid)
		}
	}
	table := datapath.AssignSlots(prev, wbs, 0)
	if len(wbs) > len(table) {
		// More backends than slots: those without a slot hold no reference.
		in := make(map[uint32]struct{}, len(table))
		for _, b := range table {
			in[b] = struct{}{}
		}
		for _, b := range wbs {
			if _, ok := in[b.ID]; !ok {
				t.releaseBackend(b.ID)
			}
		}
	}
	old, had := t.want.Frontends[fe.Key]
	unchanged := had && old.FrontendId == id && slices.Equal(prev, table)
	if !unchanged {
		t.want.PutFrontend(fe.Key, id, table)
	}
	for _, b := range distinct(prev) {
		t.releaseBackend(b)
	}
	if !unchanged {
		// An unchanged frontend is not touched: it costs Pending nothing.
		t.touchFrontend(fe.Key, old, had)
	}
}

// deleteFrontend removes key and its slots from Want and releases its id
// and backend references.
func (t *Table) deleteFrontend(key datapath.FrontendKey) {
	old, had := t.want.Frontends[key]
	if !had {
		return
	}
	prev := t.want.SlotTable(key)
	t.want.DeleteFrontend(key)
	for _, b := range distinct(prev) {
		t.releaseBackend(b)
	}
	t.ids.ReleaseFrontend(key)
	t.touchFrontend(key, old, had)
}

func (t *Table) releaseBackend(id uint32) {
	if t.ids.ReleaseBackend(id) {
		delete(t.want.Backends, datapath.BackendKey{BackendId: id})
		t.touchBackend(id)
	}
}

// resetTouched forgets the touched keys.
func (t *Table) resetTouched() {
	t.touchedFrontends = emptied(t.touchedFrontends)
	t.touchedSlots = emptied(t.touchedSlots)
	t.touchedBackends = emptied(t.touchedBackends)
}

// emptied returns m cleared, or a new map when m is nil or grew beyond a
// few dozen keys (a restart, a big flush): iterating a cleared map still
// costs its former size, and every Pending iterates these maps.
func emptied[K comparable, V any](m map[K]V) map[K]V {
	if m == nil || len(m) > 64 {
		return map[K]V{}
	}
	clear(m)
	return m
}

func (t *Table) touchFrontend(k datapath.FrontendKey, old datapath.FrontendValue, had bool) {
	if _, ok := t.touchedFrontends[k]; !ok {
		t.touchedFrontends[k] = struct{}{}
		t.weight++
		if had {
			t.weight += int(old.SlotCount)
		}
	}
	if v, ok := t.want.Frontends[k]; ok {
		t.weight += int(v.SlotCount)
	}
}

func (t *Table) touchBackend(id uint32) {
	if _, ok := t.touchedBackends[id]; !ok {
		t.touchedBackends[id] = struct{}{}
		t.weight++
	}
}
