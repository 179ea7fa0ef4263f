package nodemodel

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

func svcKey(i int) keyspace.Service {
	return keyspace.Service{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i)}
}

// frontend builds a frontend of key(k) with backends addr(b) for b in bs.
func frontend(k int, bs ...int) Frontend {
	fe := Frontend{Key: key(k)}
	for _, b := range bs {
		fe.Backends = append(fe.Backends, Backend{Addr: addr(b), Weight: 1})
	}
	return fe
}

// commit applies t's pending change set to a model datapath and commits it.
func commit(t *testing.T, tb *Table, kernel datapath.State) datapath.ChangeSet {
	t.Helper()
	return commitAfter(t, tb, kernel, false)
}

// commitAfter is commit; afterSplit says that the previous change set
// was applied without its garbage (the writer's split), whose backend ids
// Commit recycled while their entries, unreachable, are still in the
// datapath: a new backend may then take such an id over, which
// checkIDReuse would refuse.
func commitAfter(t *testing.T, tb *Table, kernel datapath.State, afterSplit bool) datapath.ChangeSet {
	t.Helper()
	cs := tb.Pending()
	if full := datapath.DiffStates(tb.Applied(), tb.Want()); fmt.Sprint(full) != fmt.Sprint(cs) {
		t.Fatalf("Pending differs from the full diff:\n%+v\nfull\n%+v", cs, full)
	}
	if !afterSplit {
		checkIDReuse(t, tb.Applied(), cs)
	}
	cs.ApplyTo(kernel)
	tb.Commit(cs)
	if !tb.Applied().Equal(tb.Want()) {
		t.Fatal("after Commit, Applied != Want")
	}
	if !kernel.Equal(tb.Want()) {
		t.Fatal("after Commit, the datapath != Want")
	}
	if err := tb.Want().Check(); err != nil {
		t.Fatalf("Want is inconsistent: %v", err)
	}
	return cs
}

// checkIDReuse fails if cs gives an id that applied uses to something else.
func checkIDReuse(t *testing.T, applied datapath.State, cs datapath.ChangeSet) {
	t.Helper()
	owner := map[uint32]datapath.FrontendKey{}
	for k, v := range applied.Frontends {
		owner[v.FrontendId] = k
	}
	for _, e := range cs.UpsertFrontends {
		if k, ok := owner[e.Value.FrontendId]; ok && k != e.Key {
			t.Fatalf("frontend id %d of %s given to %s in the same change set", e.Value.FrontendId, k, e.Key)
		}
	}
	for _, e := range cs.UpsertBackends {
		if v, ok := applied.Backends[e.Key]; ok && v != e.Value {
			t.Fatalf("backend id %d of %s rewritten to %s in one change set", e.Key.BackendId, v, e.Value)
		}
	}
}

func TestTableUnchangedServiceCostsNothing(t *testing.T) {
	tb, kernel := NewTable(datapath.NewState()), datapath.NewState()
	fes := []Frontend{frontend(1, 1, 2, 3), frontend(2, 2, 3, 4)}
	tb.Set(svcKey(1), fes)
	if cs := commit(t, tb, kernel); cs.Len() != 2+6+4 {
		t.Fatalf("first write: %d entries, want 12", cs.Len())
	}
	tb.Set(svcKey(1), fes)
	if cs := tb.Pending(); !cs.Empty() {
		t.Fatalf("identical Set: %d entries", cs.Len())
	}
}

func TestTableOneEndpointChange(t *testing.T) {
	tb, kernel := NewTable(datapath.NewState()), datapath.NewState()
	tb.Set(svcKey(1), []Frontend{frontend(1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)})
	tb.Set(svcKey(2), []Frontend{frontend(2, 5, 11)}) // shares backend 5
	commit(t, tb, kernel)

	// Replace endpoint 5 of service 1 by 20: a new backend, one slot, and
	// backend 5 stays (service 2 uses it).
	tb.Set(svcKey(1), []Frontend{frontend(1, 1, 2, 3, 4, 20, 6, 7, 8, 9, 10)})
	cs := commit(t, tb, kernel)
	if len(cs.UpsertBackends) != 1 || len(cs.UpsertSlots) != 1 || cs.Len() != 2 {
		t.Fatalf("one endpoint replaced: %+v", cs)
	}
	// Replace 6 (not shared): new backend, one slot, old backend trimmed.
	tb.Set(svcKey(1), []Frontend{frontend(1, 1, 2, 3, 4, 20, 21, 7, 8, 9, 10)})
	cs = commit(t, tb, kernel)
	if len(cs.UpsertBackends) != 1 || len(cs.UpsertSlots) != 1 || len(cs.TrimBackends) != 1 || cs.Len() != 3 {
		t.Fatalf("one endpoint replaced: %+v", cs)
	}
	// Remove service 2: frontend, its two slots, backends 5 (service 1
	// dropped it above) and 11.
	tb.Remove(svcKey(2))
	cs = commit(t, tb, kernel)
	if len(cs.DeleteFrontends) != 1 || len(cs.DeleteSlots) != 2 || len(cs.DeleteBackends) != 2 || cs.Len() != 5 {
		t.Fatalf("service removed: %+v", cs)
	}
}

func TestTableRestartWritesNothing(t *testing.T) {
	tb, kernel := NewTable(datapath.NewState()), datapath.NewState()
	fes := map[int][]Frontend{}
	for i := range 20 {
		fes[i] = []Frontend{frontend(i, i, i+1, i+2), frontend(100+i, i+3)}
		tb.Set(svcKey(i), fes[i])
	}
	commit(t, tb, kernel)

	// A new table over the dumped kernel state: same content, zero writes.
	tb2 := NewTable(kernel.Clone())
	if n := len(tb2.Orphans()); n != 40 {
		t.Fatalf("%d orphans before any service is claimed, want 40", n)
	}
	for i := range 20 {
		tb2.Set(svcKey(i), fes[i])
		if cs := tb2.Pending(); !cs.Empty() {
			t.Fatalf("service %d re-set after restart: %+v", i, cs)
		}
	}
	if n := len(tb2.Orphans()); n != 0 {
		t.Fatalf("%d orphans after every service was claimed", n)
	}
	tb2.SweepOrphans()
	if cs := tb2.Pending(); !cs.Empty() {
		t.Fatalf("sweep with no orphan: %+v", cs)
	}
	// Ids keep working after the rebuild: a change reuses nothing in use.
	tb2.Set(svcKey(3), []Frontend{frontend(3, 50, 51)})
	commit(t, tb2, kernel)
}

func TestTableOrphansKeptUntilSwept(t *testing.T) {
	tb, kernel := NewTable(datapath.NewState()), datapath.NewState()
	tb.Set(svcKey(1), []Frontend{frontend(1, 1, 2)})
	tb.Set(svcKey(2), []Frontend{frontend(2, 2, 3)})
	commit(t, tb, kernel)
	// Debris a crash could leave: a stray slot and an unused backend.
	kernel.Slots[datapath.SlotKey{FrontendId: 999, Slot: 0}] = datapath.SlotValue{BackendId: 1}
	kernel.PutBackend(500, addr(50))

	tb2 := NewTable(kernel.Clone())
	tb2.Set(svcKey(1), []Frontend{frontend(1, 1, 2)})
	if cs := tb2.Pending(); !cs.Empty() {
		t.Fatalf("claiming an unchanged frontend: %+v", cs)
	}
	if o := tb2.Orphans(); len(o) != 1 || o[0] != key(2) {
		t.Fatalf("orphans %v, want [%s]", o, key(2))
	}
	tb2.SweepOrphans()
	cs := commit(t, tb2, kernel)
	// Frontend 2 with its two slots, backend 3 (2 is shared), the stray
	// slot and backend 500.
	if len(cs.DeleteFrontends) != 1 || cs.DeleteFrontends[0] != key(2) || len(cs.DeleteSlots) != 3 || len(cs.DeleteBackends) != 2 || cs.Len() != 6 {
		t.Fatalf("sweep: %+v", cs)
	}
}

func TestTableConflictingFrontend(t *testing.T) {
	tb, kernel := NewTable(datapath.NewState()), datapath.NewState()
	tb.Set(svcKey(1), []Frontend{frontend(1, 1)})
	if c := tb.Set(svcKey(2), []Frontend{frontend(1, 2), frontend(2, 2)}); len(c) != 1 || c[0] != key(1) {
		t.Fatalf("conflicts %v, want [%s]", c, key(1))
	}
	commit(t, tb, kernel)
	if o, _ := tb.Owner(key(1)); o != svcKey(1) {
		t.Fatalf("owner of %s is %v", key(1), o)
	}
	tb.Remove(svcKey(1))
	if c := tb.Set(svcKey(2), []Frontend{frontend(1, 2), frontend(2, 2)}); len(c) != 0 {
		t.Fatalf("conflicts after the owner left: %v", c)
	}
	commit(t, tb, kernel)
	id, _ := tb.IDs().FrontendID(key(1))
	if o, ok := tb.OwnerOfID(id); !ok || o != svcKey(2) {
		t.Fatalf("owner of id %d: %v %v", id, o, ok)
	}
}

// TestTableIncrementalMatchesFullDiff drives random changes and checks that
// the incremental change set equals the full diff of the two states.
func TestTableIncrementalMatchesFullDiff(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb, kernel := NewTable(datapath.NewState()), datapath.NewState()
	split := false // the last change set was written without its garbage
	steps := 400
	if testing.Short() {
		steps = 100
	}
	for step := range steps {
		for range 1 + rng.IntN(4) {
			s := rng.IntN(12)
			if rng.IntN(6) == 0 {
				tb.Remove(svcKey(s))
				continue
			}
			var fes []Frontend
			for f := range 1 + rng.IntN(3) {
				fe := Frontend{Key: key(s*4 + f)}
				for range rng.IntN(8) {
					fe.Backends = append(fe.Backends, Backend{Addr: addr(rng.IntN(30)), Weight: uint32(rng.IntN(4))})
				}
				fe.Backends = sortedUnique(fe.Backends)
				fes = append(fes, fe)
			}
			tb.Set(svcKey(s), fes)
		}
		full := datapath.DiffStates(tb.Applied(), tb.Want())
		inc := tb.Pending()
		if fmt.Sprint(full) != fmt.Sprint(inc) {
			t.Fatalf("step %d: incremental\n%+v\nfull\n%+v", step, inc, full)
		}
		if rng.IntN(3) == 0 {
			// As the agent's writer does: the upserts now, the deletes of
			// unreferenced entries retained for a later change set (which
			// may touch the same frontends again).
			now, garbage := datapath.SplitGarbage(inc)
			now.ApplyTo(kernel)
			tb.Commit(now)
			tb.Retain(garbage)
			split = !garbage.Empty() || split
			continue
		}
		commitAfter(t, tb, kernel, split)
		split = false
		if step%50 == 49 { // a restart: rebuild from the datapath, re-set everything
			tb2 := NewTable(kernel.Clone())
			for s := range 12 {
				var fes []Frontend
				for _, k := range tb.Frontends(svcKey(s)) {
					fes = append(fes, frontendOf(tb.Want(), tb.IDs(), k))
				}
				if len(fes) > 0 {
					tb2.Set(svcKey(s), fes)
				}
			}
			tb2.SweepOrphans()
			if cs := tb2.Pending(); !cs.Empty() {
				t.Fatalf("step %d: restart over an up-to-date datapath writes %+v", step, cs)
			}
		}
	}
}

func sortedUnique(bs []Backend) []Backend {
	seen := map[netip.AddrPort]bool{}
	var out []Backend
	for _, b := range bs {
		if !seen[b.Addr] {
			seen[b.Addr] = true
			out = append(out, b)
		}
	}
	return out
}

// frontendOf reads frontend k back from a state (weights as slot counts).
func frontendOf(st datapath.State, ids *IDs, k datapath.FrontendKey) Frontend {
	fe := Frontend{Key: k}
	counts := map[uint32]uint32{}
	var order []uint32
	for _, b := range st.SlotTable(k) {
		if counts[b] == 0 {
			order = append(order, b)
		}
		counts[b]++
	}
	for _, b := range order {
		a, _, _ := ids.Backend(b)
		fe.Backends = append(fe.Backends, Backend{Addr: a, Weight: counts[b]})
	}
	return fe
}
