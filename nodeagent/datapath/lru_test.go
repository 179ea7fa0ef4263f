package datapath

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

func TestLRUSizePolicy(t *testing.T) {
	l := &revNATMap{resizable: resizable{sizing: sizing{size: minRevNATEntries, limit: 1 << 20}}, floor: minRevNATEntries}
	if got := l.lruSize(minRevNATEntries / 2); got != 0 {
		t.Errorf("half full: resize to %d, want none", got)
	}
	if got := l.lruSize(minRevNATEntries/2 + 1); got != 2*minRevNATEntries {
		t.Errorf("just over half full: resize to %d, want %d", got, 2*minRevNATEntries)
	}
	if got := l.lruSize(10_000); got != 32768 {
		t.Errorf("10,000 recent entries: resize to %d, want 32768", got)
	}
	capped := &revNATMap{resizable: resizable{sizing: sizing{size: 4096, limit: 5000}}, floor: minRevNATEntries}
	if got := capped.lruSize(4000); got != 5000 {
		t.Errorf("past the limit: resize to %d, want the limit 5000", got)
	}
	l.size = 1 << 16
	for i := range shrinkAfter - 1 {
		if got := l.lruSize(10); got != 0 {
			t.Fatalf("shrunk after %d quiet checks, want %d", i+1, shrinkAfter)
		}
	}
	if got := l.lruSize(10); got != minRevNATEntries {
		t.Errorf("shrink to %d, want the floor %d", got, minRevNATEntries)
	}
	// One busy check resets the count: no flapping.
	l.lruSize(10)
	l.lruSize(1 << 14) // 1/4 full
	if l.lruSize(10) != 0 || l.low != 1 {
		t.Errorf("a busy check did not reset the quiet count: %+v", l.sizing)
	}
}

// TestBPFRevNATResize grows and shrinks rev_nat under the programs, with
// an agent restart between a resize and its retirement, and checks that
// connections held open throughout keep their VIP in getpeername (IPv4
// and IPv6) and that UDP replies keep coming from the VIP.
func TestBPFRevNATResize(t *testing.T) {
	vip4 := netip.MustParseAddrPort("127.77.6.1:80")
	vip6 := netip.MustParseAddrPort("[::1]:7791")
	udpVIP := netip.MustParseAddrPort("127.77.6.2:53")
	s := NewState()
	s.PutBackend(1, tcpBackend(t, "a"))
	s.PutBackend(2, tcpBackendOn(t, ipv6Loopback, "a6"))
	s.PutBackend(3, udpBackend(t, "u"))
	s.PutFrontend(NewFrontendKey(vip4, TCP), 1, []uint32{1})
	s.PutFrontend(NewFrontendKey(vip6, TCP), 2, []uint32{2})
	s.PutFrontend(NewFrontendKey(udpVIP, UDP), 3, []uint32{3})
	e := newProgEnv(t, s)
	h := startHelper(t, e.cgroup)
	defer h.do(helperCmd{Op: "release"})
	conns := &heldConns{h: h, vips: []netip.AddrPort{vip4, vip6}}
	check := func(when string) {
		t.Helper()
		conns.check(t, when)
		if res := h.do(helperCmd{Op: "udp", Addr: udpVIP.String(), N: 5}); res.Errors != 0 || res.Peers[udpVIP.String()] != 5 {
			t.Fatalf("%s: UDP replies: %+v", when, res)
		}
	}
	lruCheck := func() {
		t.Helper()
		e.dp.mu.Lock()
		defer e.dp.mu.Unlock()
		if err := e.dp.rn.check(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	slot1 := func() bool {
		var m *ebpf.Map
		err := e.dp.rn.outer.Lookup(uint32(1), &m)
		if err == nil {
			m.Close()
			return true
		}
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Fatal(err)
		}
		return false
	}

	conns.hold(t, "at the start")
	if st := e.dp.Stats().Map(mapRevNAT); st.MaxEntries != minRevNATEntries || st.Entries != 2*conns.n || st.Limit != DefaultMaxRevNAT {
		t.Fatalf("rev_nat at the start: %+v", st)
	}
	lruCheck()
	if e.dp.rn.resizes != 0 {
		t.Fatal("a nearly empty rev_nat was resized")
	}

	// 1,100 short connects: more than half of 2,048 entries used recently.
	if res := h.do(helperCmd{Op: "bench", Addr: vip4.String(), N: 1100}); res.Errors != 0 {
		t.Fatalf("connects: %+v", res)
	}
	// Apply checks at most every lruCheckInterval: this one is due.
	e.dp.rn.lastCheck = time.Time{}
	mustApply(t, e.dp, ChangeSet{})
	st := e.dp.Stats().Map(mapRevNAT)
	if st.MaxEntries != 2*minRevNATEntries || st.Resizes != 1 || st.Entries < 1100 || !slot1() {
		t.Fatalf("rev_nat after 1,100 connects: %+v (old map in slot 1: %v)", st, slot1())
	}
	check("after growing")
	conns.hold(t, "after growing")

	// A restart before the old map is retired.
	e.restart(t)
	dp := e.dp
	if dp.rn.prev == nil || dp.rn.size != 2*minRevNATEntries {
		t.Fatalf("the restart did not find the resize in progress: size %d, previous map %v", dp.rn.size, dp.rn.prev)
	}
	// A read-only open (nodeagent dump) reports the new map and finishes
	// nothing.
	ro, err := OpenBPF(BPFOptions{PinPath: e.pin, ReadOnly: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if st := ro.Stats().Map(mapRevNAT); st.MaxEntries != 2*minRevNATEntries || st.Entries < 1100 {
		t.Errorf("read-only stats of rev_nat mid-resize: %+v", st)
	}
	ro.Close()
	if !slot1() {
		t.Fatal("a read-only open retired the old map")
	}
	check("after a restart mid-resize")
	conns.hold(t, "after a restart mid-resize")

	// The programs fall back to the old map: drop from the new one what
	// the copy put there (as if program runs had written the old map after
	// the copy read it); the retiring check copies it again.
	var copied []meshrelayRevnatKey
	err = dp.rn.table(dp.rn.prev).walk(context.Background(), new(uint64), func(k meshrelayRevnatKey, _ meshrelayRevnatValue) {
		copied = append(copied, k)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range copied {
		if err := dp.rn.m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Fatal(err)
		}
	}
	check("with the old entries only in the old map")

	lruCheck() // retires the old map
	if slot1() || dp.rn.prev != nil {
		t.Fatal("the old map is still in slot 1 after a check")
	}
	check("after retiring the old map")

	// Nothing used recently: it shrinks after shrinkAfter checks, keeping
	// the most recently used entries (all fit here).
	dp.rn.retention = 1
	for range shrinkAfter {
		lruCheck()
	}
	lruCheck()
	st = dp.Stats().Map(mapRevNAT)
	if st.MaxEntries != minRevNATEntries || st.Resizes != 1 || slot1() {
		t.Fatalf("rev_nat after quiet checks: %+v", st)
	}
	check("after shrinking")
}

// TestBPFUsageResize grows the usage map past its initial size, checks
// that Programs.Usage reads both slots while a resize is in progress, and
// shrinks it back, keeping a frontend the programs marked used.
func TestBPFUsageResize(t *testing.T) {
	vipA := netip.MustParseAddrPort("127.77.6.3:80")
	s := NewState()
	s.PutBackend(1, tcpBackend(t, "a"))
	s.PutFrontend(NewFrontendKey(vipA, TCP), 7, []uint32{1})
	e := newProgEnv(t, s)
	h := startHelper(t, e.cgroup)
	if res := h.do(helperCmd{Op: "tcp", Addr: vipA.String(), N: 2}); res.Errors != 0 || res.Backends["a"] != 2 {
		t.Fatalf("connects: %+v", res)
	}
	usedBy := func(when string, ids ...uint32) {
		t.Helper()
		usage, err := e.progs.Usage()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if last, ok := usage[id]; !ok || time.Since(last) > time.Minute {
				t.Fatalf("%s: frontend %d not reported used (%v; %d frontends)", when, id, last, len(usage))
			}
		}
	}
	usedBy("at the start", 7)

	// 600 more frontends in use: more than half of 1,024.
	now, err := monotonicNow()
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint32(600) {
		k, v := meshrelayUsageKey{FrontendId: 10_000 + i}, meshrelayUsageValue{LastUsedNs: uint64(now)}
		if err := e.dp.us.m.Update(&k, &v, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
	e.dp.us.lastCheck = time.Time{}
	mustApply(t, e.dp, ChangeSet{})
	st := e.dp.Stats().Map(mapUsage)
	if st.MaxEntries != 2*minUsageEntries || st.Resizes != 1 || st.Entries != 601 || e.dp.us.prev == nil {
		t.Fatalf("usage after 601 frontends in use: %+v", st)
	}
	usedBy("after growing", 7, 10_000, 10_599)

	// Mid-resize, a use only the old map holds is still reported.
	k := meshrelayUsageKey{FrontendId: 7}
	if err := e.dp.us.m.Delete(&k); err != nil {
		t.Fatal(err)
	}
	usedBy("with frontend 7 only in the old map", 7)
	e.dp.mu.Lock()
	err = e.dp.us.check(context.Background()) // retires the old map, copying 7 again
	e.dp.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if e.dp.us.prev != nil {
		t.Fatal("the old usage map was not retired")
	}
	usedBy("after retiring the old map", 7)

	// A new use after the resize lands in the new map.
	if err := e.dp.us.m.Delete(&k); err != nil {
		t.Fatal(err)
	}
	if res := h.do(helperCmd{Op: "tcp", Addr: vipA.String(), N: 1}); res.Errors != 0 {
		t.Fatalf("connect: %+v", res)
	}
	usedBy("used again", 7)

	e.dp.us.retention = time.Hour // everything counts: no shrinking
	for range shrinkAfter + 1 {
		e.dp.mu.Lock()
		err := e.dp.us.check(context.Background())
		e.dp.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := e.dp.Stats().Map(mapUsage); st.MaxEntries != 2*minUsageEntries {
		t.Fatalf("usage shrank with 601 frontends in use: %+v", st)
	}
}
