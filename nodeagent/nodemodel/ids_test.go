package nodemodel

import (
	"net/netip"
	"testing"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

func key(i int) datapath.FrontendKey {
	return datapath.NewFrontendKey(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, byte(i >> 8), byte(i)}), 80), datapath.TCP)
}

func addr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}), uint16(8000+i))
}

func TestIDsStableAndRecycledOnlyAfterRecycle(t *testing.T) {
	a := NewIDs()
	f1, f2 := a.Frontend(key(1)), a.Frontend(key(2))
	if f1 == 0 || f2 == 0 || f1 == f2 || a.Frontend(key(1)) != f1 {
		t.Fatalf("frontend ids %d %d not stable and distinct", f1, f2)
	}
	a.ReleaseFrontend(key(1))
	if f3 := a.Frontend(key(3)); f3 == f1 {
		t.Fatalf("id %d reused before Recycle", f1)
	}
	a.Recycle()
	if f4 := a.Frontend(key(4)); f4 != f1 {
		t.Fatalf("after Recycle got %d, want the released %d", f4, f1)
	}

	b1 := a.AcquireBackend(addr(1))
	if b := a.AcquireBackend(addr(1)); b != b1 {
		t.Fatalf("same address, ids %d and %d", b1, b)
	}
	if _, refs, _ := a.Backend(b1); refs != 2 {
		t.Fatalf("refs %d, want 2", refs)
	}
	if a.ReleaseBackend(b1) {
		t.Fatal("first release reported last")
	}
	if !a.ReleaseBackend(b1) {
		t.Fatal("second release not last")
	}
	if b := a.AcquireBackend(addr(2)); b == b1 {
		t.Fatal("backend id reused before Recycle")
	}
	a.Recycle()
	if b := a.AcquireBackend(addr(3)); b != b1 {
		t.Fatalf("after Recycle got %d, want %d", b, b1)
	}
}

func TestRebuildIDsFromDump(t *testing.T) {
	st := datapath.NewState()
	st.PutBackend(7, addr(1))
	st.PutBackend(9, addr(2))
	st.PutBackend(12, addr(3)) // unreferenced
	st.PutBackend(15, addr(1)) // duplicate address, referenced
	st.PutFrontend(key(1), 4, []uint32{7, 9, 7})
	st.PutFrontend(key(2), 6, []uint32{9, 15})
	st.Slots[datapath.SlotKey{FrontendId: 30, Slot: 0}] = datapath.SlotValue{BackendId: 9} // stray

	a := RebuildIDs(st)
	if id, _ := a.FrontendID(key(1)); id != 4 {
		t.Errorf("frontend 1 id %d, want 4", id)
	}
	if k, ok := a.FrontendKey(6); !ok || k != key(2) {
		t.Errorf("id 6 -> %v %v", k, ok)
	}
	for id, want := range map[uint32]int{7: 1, 9: 2, 12: 0, 15: 1} {
		if _, refs, ok := a.Backend(id); !ok || refs != want {
			t.Errorf("backend %d: refs %d (ok %v), want %d", id, refs, ok, want)
		}
	}
	if id := a.AcquireBackend(addr(1)); id != 7 {
		t.Errorf("address of 7 and 15 acquired as %d, want the lower 7", id)
	}
	if got := a.Strays(); len(got) != 1 || got[0] != 30 {
		t.Errorf("strays %v, want [30]", got)
	}
	// New ids never collide with ids in use, strays included.
	used := map[uint32]bool{4: true, 6: true, 30: true}
	for i := 10; i < 50; i++ {
		id := a.Frontend(key(i))
		if used[id] {
			t.Fatalf("frontend id %d handed out twice", id)
		}
		used[id] = true
	}
	if got := a.DropUnreferenced(); len(got) != 1 || got[0] != 12 {
		t.Fatalf("unreferenced %v, want [12]", got)
	}
	bused := map[uint32]bool{7: true, 9: true, 12: true, 15: true}
	for i := 10; i < 40; i++ {
		id := a.AcquireBackend(addr(i))
		if bused[id] {
			t.Fatalf("backend id %d handed out twice (12 must wait for Recycle)", id)
		}
		bused[id] = true
	}
}
