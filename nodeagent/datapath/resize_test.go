package datapath

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
)

func TestSizingPolicy(t *testing.T) {
	s := newSizing(1 << 20)
	if s.size != minMapEntries || s.grown(minMapEntries/2) != 0 {
		t.Fatalf("fresh sizing %+v grows for %d entries", s, minMapEntries/2)
	}
	if got := s.grown(1000); got != 2048 {
		t.Errorf("grown(1000) = %d, want 2048", got)
	}
	limited := newSizing(1000)
	if got := limited.grown(5000); got != 1000 {
		t.Errorf("grown past the limit = %d, want the limit 1000", got)
	}
	s.size = 4096
	for i := range shrinkAfter - 1 {
		if got := s.shrunk(10); got != 0 {
			t.Fatalf("shrunk after %d low Applies to %d, want to wait for %d", i+1, got, shrinkAfter)
		}
	}
	if got := s.shrunk(10); got != minMapEntries {
		t.Errorf("shrunk = %d, want %d", got, minMapEntries)
	}
	// One busy Apply resets the count: no flapping.
	s.size = 4096
	s.shrunk(10)
	s.shrunk(4096 / 2)
	if s.shrunk(10) != 0 || s.low != 1 {
		t.Errorf("a busy Apply did not reset the low count: %+v", s)
	}
}

// TestBPFResize grows the maps under attached programs, restarts the agent
// in between, shrinks them again, and checks a VIP is translated
// throughout and the pins follow the live maps.
func TestBPFResize(t *testing.T) {
	a := tcpBackend(t, "a")
	vipA := netip.MustParseAddrPort("127.77.3.1:80")
	small := NewState()
	small.PutBackend(1_000_000, a)
	small.PutFrontend(NewFrontendKey(vipA, TCP), 1_000_000, []uint32{1_000_000})
	e := newProgEnv(t, small)
	h := startHelper(t, e.cgroup)
	check := func(when string) {
		t.Helper()
		if res := h.do(helperCmd{Op: "tcp", Addr: vipA.String(), N: 20}); res.Errors != 0 || res.Backends["a"] != 20 || res.Peers[vipA.String()] != 20 {
			t.Fatalf("%s: %+v", when, res)
		}
	}
	check("before growing")

	n := 3000
	if testing.Short() {
		n = 300
	}
	big := mergeInto(stateOf(services(n, 10), nil), small)
	e.apply(t, small, big)
	st := e.dp.Stats().Map(MapSlots)
	if st.Resizes == 0 || st.MaxEntries < st.Entries || st.Entries != len(big.Slots) {
		t.Fatalf("slots after growing to %d entries: %+v", len(big.Slots), st)
	}
	check("after growing")

	// A restart finds the grown maps through the outer maps and writes nothing.
	e.dp.Close()
	dp2, err := OpenBPF(BPFOptions{PinPath: e.pin, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	e.dp = dp2
	got := mustDump(t, dp2)
	if cs := DiffStates(got, big); !cs.Empty() {
		t.Fatalf("after a restart %d entries differ", cs.Len())
	}
	if st := mustApply(t, dp2, DiffStates(got, big)); st.Syscalls != 0 {
		t.Fatalf("unchanged restart wrote %d syscalls", st.Syscalls)
	}
	if ms := dp2.Stats().Map(MapSlots); ms.MaxEntries != st.MaxEntries {
		t.Errorf("restart sees max_entries %d, want the grown %d", ms.MaxEntries, st.MaxEntries)
	}
	pinnedID := func(name string) ebpf.MapID {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dp2.PinDir(), name), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		info, _ := m.Info()
		id, _ := info.ID()
		return id
	}
	if before := pinnedID(MapSlots); before == 0 {
		t.Fatal("no pinned slots map")
	}

	// Back to one service: the maps shrink after shrinkAfter Applies.
	mustApply(t, dp2, DiffStates(big, small))
	for range shrinkAfter {
		mustApply(t, dp2, ChangeSet{})
	}
	ms := dp2.Stats().Map(MapSlots)
	if ms.MaxEntries != minMapEntries || ms.Resizes == 0 || ms.Entries != 1 {
		t.Fatalf("slots after shrinking: %+v", ms)
	}
	check("after shrinking")
	// The pin names the live map.
	var live ebpf.MapID
	if info, err := dp2.sl.m.Info(); err == nil {
		live, _ = info.ID()
	}
	if pinnedID(MapSlots) != live {
		t.Errorf("pinned slots map is not the live one")
	}
}

// TestBPFLargeService loads a service of 65,536 backends.
func TestBPFLargeService(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 65,536 backends")
	}
	b := openBPF(t, testOptions{})
	bs := make([]WeightedBackend, 65536)
	want := NewState()
	for i := range bs {
		bs[i] = WeightedBackend{ID: uint32(i + 1), Weight: uint32(i%3 + 1)}
		want.PutBackend(bs[i].ID, backendAddr(bs[i].ID))
	}
	want.PutFrontend(NewFrontendKey(vip(9, 80), TCP), 1, AssignSlots(nil, bs, 0))
	mustApply(t, b, DiffStates(NewState(), want))
	got := mustDump(t, b)
	if !got.Equal(want) {
		t.Fatalf("dump holds %d entries, want %d", got.Len(), want.Len())
	}
	if err := got.Check(); err != nil {
		t.Fatal(err)
	}
	for _, name := range agentMaps {
		t.Logf("%s: %+v", name, b.Stats().Map(name))
	}
}
