package datapath

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
)

func TestDiffStatesIdentical(t *testing.T) {
	want := stateOf(services(2000, 5), nil)
	if cs := DiffStates(want, want.Clone()); !cs.Empty() {
		t.Fatalf("identical states gave %d changes", cs.Len())
	}
	if cs := DiffStates(NewState(), NewState()); !cs.Empty() {
		t.Fatalf("empty states gave %d changes", cs.Len())
	}
}

func TestDiffStatesDeterministic(t *testing.T) {
	have := stateOf(services(40, 4), nil)
	svcs := services(60, 3)
	want := stateOf(svcs[10:], nil)
	a, b := DiffStates(have, want), DiffStates(have, want)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two diffs of the same states differ")
	}
}

func TestDiffStatesRemovedServiceIsEarly(t *testing.T) {
	svcs := services(3, 4)
	have := stateOf(svcs, nil)
	want := stateOf(svcs[:2], nil)
	cs := DiffStates(have, want)
	if len(cs.DeleteFrontends) != 1 || len(cs.DeleteSlots) != 4 || len(cs.DeleteBackends) != 4 {
		t.Errorf("removed service not removed up front: %+v", cs)
	}
	if len(cs.TrimSlots)+len(cs.TrimBackends)+len(cs.UpsertBackends)+len(cs.UpsertSlots)+len(cs.UpsertFrontends) != 0 {
		t.Errorf("removing a service wrote more: %+v", cs)
	}
}

func TestDiffStatesShrinkIsTrimmed(t *testing.T) {
	svcs := services(1, 4)
	have := stateOf(svcs, nil)
	svcs[0].backends = svcs[0].backends[:2]
	want := stateOf(svcs, &have)
	cs := DiffStates(have, want)
	if len(cs.TrimSlots) != 2 || len(cs.TrimBackends) != 2 || len(cs.UpsertFrontends) != 1 {
		t.Errorf("shrinking: slots and backends must go after the frontend: %+v", cs)
	}
	if len(cs.DeleteSlots)+len(cs.DeleteBackends)+len(cs.DeleteFrontends) != 0 {
		t.Errorf("shrinking removed something up front: %+v", cs)
	}
}

// TestDiffStatesNeverBreaks applies random change sets one entry at a time
// and checks the state after every single entry.
func TestDiffStatesNeverBreaks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	iterations := 300
	if testing.Short() {
		iterations = 60
	}
	nextBackend := uint32(1)
	newBackend := func() WeightedBackend {
		nextBackend++
		return WeightedBackend{ID: nextBackend, Weight: uint32(rng.IntN(4))}
	}
	// Ids are never reused within one flush (the allocator's contract).
	nextID := uint32(0)
	newID := func() uint32 { nextID++; return nextID }
	var svcs []testService
	have := NewState()
	for it := range iterations {
		// Mutate the services at random.
		for range rng.IntN(4) + 1 {
			switch op := rng.IntN(6); {
			case op == 0 || len(svcs) == 0:
				svc := testService{key: NewFrontendKey(vip(rng.IntN(20), 80), Protocol([]uint8{6, 17}[rng.IntN(2)])), id: newID()}
				for range rng.IntN(5) {
					svc.backends = append(svc.backends, newBackend())
				}
				svcs = append(svcs, svc)
			case op == 1:
				i := rng.IntN(len(svcs))
				svcs = append(svcs[:i], svcs[i+1:]...)
			case op == 2:
				s := &svcs[rng.IntN(len(svcs))]
				s.backends = append(s.backends, newBackend())
			case op == 3:
				s := &svcs[rng.IntN(len(svcs))]
				if len(s.backends) > 0 {
					i := rng.IntN(len(s.backends))
					s.backends = append(s.backends[:i:i], s.backends[i+1:]...)
				}
			case op == 4:
				s := &svcs[rng.IntN(len(svcs))]
				s.id = newID()
			case op == 5:
				// Share a backend of another service.
				a, b := &svcs[rng.IntN(len(svcs))], svcs[rng.IntN(len(svcs))]
				if len(b.backends) > 0 {
					a.backends = append(a.backends, b.backends[0])
				}
			}
		}
		svcs = uniqueServices(svcs)
		want := stateOf(svcs, &have)
		if err := want.Check(); err != nil {
			t.Fatalf("iteration %d: generated state inconsistent: %v", it, err)
		}
		cs := DiffStates(have, want)
		model := have.Clone()
		for i, part := range cs.Batches(1) {
			part.All().ApplyTo(model)
			if err := model.Check(); err != nil {
				t.Fatalf("iteration %d, entry %d: %v", it, i, err)
			}
		}
		if !model.Equal(want) {
			t.Fatalf("iteration %d: change set does not reach the wanted state", it)
		}
		if again := DiffStates(model, want); !again.Empty() {
			t.Fatalf("iteration %d: diff after apply not empty", it)
		}
		have = want
	}
}

// uniqueServices drops services whose frontend key or id an earlier one has.
func uniqueServices(svcs []testService) []testService {
	keys := map[FrontendKey]bool{}
	ids := map[uint32]bool{}
	out := svcs[:0]
	for _, s := range svcs {
		if keys[s.key] || ids[s.id] {
			continue
		}
		keys[s.key], ids[s.id] = true, true
		out = append(out, s)
	}
	return out
}

func TestSplitGarbage(t *testing.T) {
	vipA := NewFrontendKey(netip.MustParseAddrPort("127.77.0.1:80"), TCP)
	vipB := NewFrontendKey(netip.MustParseAddrPort("127.77.0.2:80"), TCP)
	old := NewState()
	for id := uint32(1); id <= 4; id++ {
		old.PutBackend(id, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(8000+id)))
	}
	old.PutFrontend(vipA, 1, []uint32{1, 2, 3})
	old.PutFrontend(vipB, 2, []uint32{4})
	// A: backend 3 replaced by 5 and one slot fewer; B removed.
	want := NewState()
	for _, id := range []uint32{1, 2, 5} {
		want.PutBackend(id, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(8000+id)))
	}
	want.PutFrontend(vipA, 1, []uint32{1, 5})
	cs := DiffStates(old, want)
	now, garbage := SplitGarbage(cs)
	if len(now.DeleteSlots)+len(now.TrimSlots)+len(now.DeleteBackends)+len(now.TrimBackends) != 0 {
		t.Fatalf("now still deletes slots or backends: %+v", now)
	}
	if garbage.Len() == 0 || len(garbage.UpsertBackends)+len(garbage.UpsertSlots)+len(garbage.UpsertFrontends)+len(garbage.DeleteFrontends) != 0 {
		t.Fatalf("garbage must hold deletes of slots and backends only: %+v", garbage)
	}
	if now.Len()+garbage.Len() != cs.Len() {
		t.Fatalf("split lost entries: %d + %d != %d", now.Len(), garbage.Len(), cs.Len())
	}
	st := old.Clone()
	now.ApplyTo(st)
	if err := st.Check(); err != nil {
		t.Fatalf("after now, the state is inconsistent: %v", err)
	}
	garbage.ApplyTo(st)
	if !st.Equal(want) {
		t.Fatal("now then garbage did not reach want")
	}
	// Without upserts into a map, its deletes stay in now.
	removeOnly := DiffStates(want, NewState())
	if n, g := SplitGarbage(removeOnly); g.Len() != 0 || n.Len() != removeOnly.Len() {
		t.Fatalf("a removal-only change set was split: %d garbage", g.Len())
	}
}
