package nodemodel

import (
	"net/netip"
	"slices"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// IDs hands out the ids of one node's maps: a frontend id per frontend key,
// a backend id per backend address (address and target port). Backend ids
// are shared by every frontend whose slots use the address and counted:
// Table holds one reference per frontend that uses a backend.
//
// An id that is released goes to a pending list and is handed out again
// only after Recycle, which the caller calls after the Apply that removed
// the id's entries succeeded (see datapath.ChangeSet: an id is never reused
// within the change set that frees it).
//
// The zero value is not usable: use NewIDs or RebuildIDs. Ids start at 1.
type IDs struct {
	frontends idPool
	backends  idPool

	byKey   map[datapath.FrontendKey]uint32
	keyOf   map[uint32]datapath.FrontendKey
	stray   map[uint32]struct{} // frontend ids in use by slots of no frontend (from a dump)
	byAddr  map[netip.AddrPort]uint32
	backend map[uint32]backendRef // by value: one lookup, no pointer to chase
}

// backendRef is one backend id in use.
type backendRef struct {
	addr netip.AddrPort
	refs int
}

// NewIDs returns an allocator with no id in use.
func NewIDs() *IDs {
	return &IDs{
		frontends: newIDPool(),
		backends:  newIDPool(),
		byKey:     map[datapath.FrontendKey]uint32{},
		keyOf:     map[uint32]datapath.FrontendKey{},
		stray:     map[uint32]struct{}{},
		byAddr:    map[netip.AddrPort]uint32{},
		backend:   map[uint32]backendRef{},
	}
}

// RebuildIDs returns an allocator holding the ids of st, a dumped state:
// every frontend keeps its id; every backend id is bound to its address and
// counted once per frontend whose slots use it. Frontend ids used only by
// slots of no frontend are held as strays until ReleaseStray. When two
// backend ids hold the same address (possible only after a crash between
// writes), the lower one is the address's id for new references; the other
// keeps its references until they are released.
func RebuildIDs(st datapath.State) *IDs {
	a := NewIDs()
	var feIDs, beIDs []uint32
	for k, v := range st.Frontends {
		a.byKey[k] = v.FrontendId
		a.keyOf[v.FrontendId] = k
		feIDs = append(feIDs, v.FrontendId)
	}
	for sk := range st.Slots {
		if _, ok := a.keyOf[sk.FrontendId]; !ok {
			if _, dup := a.stray[sk.FrontendId]; !dup {
				a.stray[sk.FrontendId] = struct{}{}
				feIDs = append(feIDs, sk.FrontendId)
			}
		}
	}
	for k, v := range st.Backends {
		addr := v.AddrPort()
		a.backend[k.BackendId] = backendRef{addr: addr}
		if cur, ok := a.byAddr[addr]; !ok || k.BackendId < cur {
			a.byAddr[addr] = k.BackendId
		}
		beIDs = append(beIDs, k.BackendId)
	}
	for k := range st.Frontends {
		for _, id := range distinct(st.SlotTable(k)) {
			if r, ok := a.backend[id]; ok {
				r.refs++
				a.backend[id] = r
			}
		}
	}
	a.frontends.rebuild(feIDs)
	a.backends.rebuild(beIDs)
	return a
}

// Frontend returns the id of key, handing out a new one if key has none.
func (a *IDs) Frontend(key datapath.FrontendKey) uint32 {
	if id, ok := a.byKey[key]; ok {
		return id
	}
	id := a.frontends.get()
	a.byKey[key] = id
	a.keyOf[id] = key
	return id
}

// FrontendID returns the id of key, if it has one.
func (a *IDs) FrontendID(key datapath.FrontendKey) (uint32, bool) {
	id, ok := a.byKey[key]
	return id, ok
}

// FrontendKey returns the key whose id is id.
func (a *IDs) FrontendKey(id uint32) (datapath.FrontendKey, bool) {
	k, ok := a.keyOf[id]
	return k, ok
}

// ReleaseFrontend releases key's id; it is reused after Recycle.
func (a *IDs) ReleaseFrontend(key datapath.FrontendKey) {
	id, ok := a.byKey[key]
	if !ok {
		return
	}
	delete(a.byKey, key)
	delete(a.keyOf, id)
	a.frontends.put(id)
}

// Strays returns the frontend ids that a dump's slots use but no frontend
// has, sorted.
func (a *IDs) Strays() []uint32 {
	out := make([]uint32, 0, len(a.stray))
	for id := range a.stray {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// ReleaseStray releases the stray frontend ids; the caller deletes their
// slots in the same change set.
func (a *IDs) ReleaseStray() {
	for id := range a.stray {
		a.frontends.put(id)
	}
	clear(a.stray)
}

// AcquireBackend returns the id of addr, handing out a new one if addr has
// none, and adds a reference to it.
func (a *IDs) AcquireBackend(addr netip.AddrPort) uint32 {
	r := backendRef{addr: addr}
	id, ok := a.byAddr[addr]
	if ok {
		r = a.backend[id]
	} else {
		id = a.backends.get()
		a.byAddr[addr] = id
	}
	r.refs++
	a.backend[id] = r
	return id
}

// ReleaseBackend drops a reference to backend id. It reports whether that
// was the last one: the id is then released (reused after Recycle) and the
// caller deletes the backend's entry.
func (a *IDs) ReleaseBackend(id uint32) (last bool) {
	r, ok := a.backend[id]
	if !ok {
		return false
	}
	if r.refs > 0 {
		r.refs--
	}
	if r.refs > 0 {
		a.backend[id] = r
		return false
	}
	a.dropBackend(id, r.addr)
	return true
}

// DropUnreferenced releases every backend id without references (left by
// a dump) and returns them, sorted; the caller deletes their entries.
func (a *IDs) DropUnreferenced() []uint32 {
	var out []uint32
	for id, r := range a.backend {
		if r.refs == 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	for _, id := range out {
		a.dropBackend(id, a.backend[id].addr)
	}
	return out
}

func (a *IDs) dropBackend(id uint32, addr netip.AddrPort) {
	delete(a.backend, id)
	if a.byAddr[addr] == id {
		delete(a.byAddr, addr)
	}
	a.backends.put(id)
}

// Backend returns the address of backend id and its number of references.
func (a *IDs) Backend(id uint32) (addr netip.AddrPort, refs int, ok bool) {
	r, ok := a.backend[id]
	if !ok {
		return netip.AddrPort{}, 0, false
	}
	return r.addr, r.refs, true
}

// Recycle makes every id released so far available again. Call it after
// the Apply that removed their entries succeeded.
func (a *IDs) Recycle() {
	a.frontends.recycle()
	a.backends.recycle()
}

// Len returns the number of frontend and backend ids in use (strays and
// released ids not counted).
func (a *IDs) Len() (frontends, backends int) { return len(a.byKey), len(a.backend) }

// idPool hands out uint32 ids from 1, reusing released ones after recycle.
type idPool struct {
	next    uint32   // no id >= next was ever handed out
	free    []uint32 // reusable now
	pending []uint32 // released, reusable after recycle
}

func newIDPool() idPool { return idPool{next: 1} }

func (p *idPool) get() uint32 {
	if n := len(p.free); n > 0 {
		id := p.free[n-1]
		p.free = p.free[:n-1]
		return id
	}
	id := p.next
	p.next++
	return id
}

func (p *idPool) put(id uint32) { p.pending = append(p.pending, id) }

func (p *idPool) recycle() {
	p.free = append(p.free, p.pending...)
	p.pending = p.pending[:0]
}

// maxGaps bounds the unused ids below the highest one that rebuild makes
// reusable; beyond it, ids above the highest are handed out instead.
const maxGaps = 1 << 16

// rebuild sets the pool to "ids in use": ids above the highest are new,
// gaps below it are free (when there are not too many).
func (p *idPool) rebuild(inUse []uint32) {
	*p = newIDPool()
	if len(inUse) == 0 {
		return
	}
	slices.Sort(inUse)
	inUse = slices.Compact(inUse)
	top := inUse[len(inUse)-1]
	p.next = top + 1
	if gaps := int(top) - len(inUse); gaps <= 0 || gaps > maxGaps {
		return
	}
	// Free gaps, highest first, so that get hands out the lowest first.
	j := len(inUse) - 1
	for id := top; id >= 1; id-- {
		if j >= 0 && inUse[j] == id {
			j--
			continue
		}
		p.free = append(p.free, id)
	}
}

// distinct returns the distinct ids of table, in first-seen order.
func distinct(table []uint32) []uint32 {
	if len(table) == 0 {
		return nil
	}
	out := make([]uint32, 0, len(table))
	if len(table) <= 64 {
		// A slot table repeats a handful of backends: a scan of out
		// beats a map.
		for _, id := range table {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
		return out
	}
	seen := make(map[uint32]struct{}, len(table))
	for _, id := range table {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}
