package datapath

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// progEnv is a BPF datapath in a temporary pin directory with the
// programs installed on a temporary child cgroup.
type progEnv struct {
	dp     *BPF
	progs  *Programs
	cgroup string
	pin    string
}

func newProgEnv(t *testing.T, want State) *progEnv {
	t.Helper()
	e := &progEnv{cgroup: testCgroup(t), pin: testPinPath(t)}
	var err error
	if e.dp, err = OpenBPF(BPFOptions{PinPath: e.pin, Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.dp.Close() })
	mustApply(t, e.dp, DiffStates(NewState(), want))
	e.install(t)
	// Detach before the cgroup goes (cleanups run last-in first-out).
	t.Cleanup(func() {
		if err := Uninstall(e.pin); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})
	return e
}

func (e *progEnv) install(t *testing.T) {
	t.Helper()
	p, err := Install(e.dp, ProgramsOptions{CgroupPath: e.cgroup, MissInterval: time.Minute, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	e.progs = p
}

// restart is an agent restart: the datapath closed and reopened from its
// pins, the programs reinstalled in place.
func (e *progEnv) restart(t *testing.T) {
	t.Helper()
	e.dp.Close()
	dp, err := OpenBPF(BPFOptions{PinPath: e.pin, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	e.dp = dp
	e.progs.Close()
	e.install(t)
}

// apply moves the datapath from have to want.
func (e *progEnv) apply(t *testing.T, have, want State) {
	t.Helper()
	mustApply(t, e.dp, DiffStates(have, want))
}

func TestProgramsLoad(t *testing.T) {
	requireBPF(t)
	dp, err := OpenBPF(BPFOptions{PinPath: testPinPath(t), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	coll, err := ebpf.NewCollectionWithOptions(dp.spec, ebpf.CollectionOptions{MapReplacements: dp.maps})
	if err != nil {
		t.Fatalf("verifier rejected the programs: %v", err)
	}
	defer coll.Close()
	if len(coll.Programs) != len(attachOrder) {
		t.Fatalf("%d programs loaded, want %d", len(coll.Programs), len(attachOrder))
	}
	for _, name := range attachOrder {
		if coll.Programs[name] == nil || coll.Programs[name].Type() != ebpf.CGroupSockAddr {
			t.Errorf("%s missing or of the wrong type", name)
		}
	}
}

func TestProgramsTCP(t *testing.T) {
	a, b := tcpBackend(t, "a"), tcpBackend(t, "b")
	vip := netip.MustParseAddrPort("127.77.1.1:80")
	key := NewFrontendKey(vip, TCP)
	have := NewState()
	have.PutBackend(1, a)
	have.PutBackend(2, b)
	have.PutFrontend(key, 7, AssignSlots(nil, []WeightedBackend{{ID: 1, Weight: 1}, {ID: 2, Weight: 3}}, 0))
	e := newProgEnv(t, have)
	h := startHelper(t, e.cgroup)

	n := 1000
	if testing.Short() {
		n = 400
	}
	res := h.do(helperCmd{Op: "tcp", Addr: vip.String(), N: n})
	if res.Errors != 0 || res.Backends["a"]+res.Backends["b"] != n {
		t.Fatalf("%d connects to the VIP: %+v", n, res)
	}
	if res.Peers[vip.String()] != n {
		t.Errorf("getpeername returned %v, want the VIP %s every time", res.Peers, vip)
	}
	// Weight 3 of 4: expect 75 %; the tolerance is over 4.5 standard deviations.
	if share := float64(res.Backends["b"]) / float64(n); share < 0.65 || share > 0.85 {
		t.Errorf("backend b (weight 3 of 4) got %.2f of the connects: %v", share, res.Backends)
	}

	usage, err := e.progs.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if last, ok := usage[7]; !ok || time.Since(last) > time.Minute || time.Until(last) > time.Second {
		t.Errorf("usage of frontend 7: %v (all: %v)", last, usage)
	}

	// Backend a removed: new connects go to b only.
	want := have.Clone()
	want.PutFrontend(key, 7, AssignSlots(have.SlotTable(key), []WeightedBackend{{ID: 2, Weight: 3}}, 0))
	delete(want.Backends, BackendKey{BackendId: 1})
	e.apply(t, have, want)
	res = h.do(helperCmd{Op: "tcp", Addr: vip.String(), N: 50})
	if res.Errors != 0 || res.Backends["b"] != 50 {
		t.Fatalf("after removing a, connects went to %v (%d errors: %s)", res.Backends, res.Errors, res.FirstErr)
	}
}

// TestProgramsConnect6 uses a dual-stack socket and a v4-mapped VIP (still
// in 127.77.0.0/16): connect6 and getpeername6.
func TestProgramsConnect6(t *testing.T) {
	a := tcpBackend(t, "a")
	vip := netip.MustParseAddrPort("127.77.1.5:80")
	have := NewState()
	have.PutBackend(1, a)
	have.PutFrontend(NewFrontendKey(vip, TCP), 1, []uint32{1})
	e := newProgEnv(t, have)
	h := startHelper(t, e.cgroup)

	mapped := netip.AddrPortFrom(netip.AddrFrom16(vip.Addr().As16()), vip.Port())
	res := h.do(helperCmd{Op: "tcp6", Addr: mapped.String(), N: 5})
	if res.Errors != 0 || res.Backends["a"] != 5 {
		t.Fatalf("connects to %s: %+v", mapped, res)
	}
	if res.Peers[mapped.String()] != 5 {
		t.Errorf("getpeername returned %v, want %s", res.Peers, mapped)
	}
}

func TestProgramsUDP(t *testing.T) {
	u := udpBackend(t, "udp-1")
	vip := netip.MustParseAddrPort("127.77.1.2:5353")
	have := NewState()
	have.PutBackend(1, u)
	have.PutFrontend(NewFrontendKey(vip, UDP), 3, []uint32{1})
	e := newProgEnv(t, have)
	h := startHelper(t, e.cgroup)

	res := h.do(helperCmd{Op: "udp", Addr: vip.String(), N: 5})
	if res.Errors != 0 || res.Backends["udp-1"] != 5 {
		t.Fatalf("datagrams to the VIP: %+v", res)
	}
	if res.Peers[vip.String()] != 5 {
		t.Errorf("replies came from %v, want the VIP %s", res.Peers, vip)
	}
}

func TestProgramsMisses(t *testing.T) {
	a := tcpBackend(t, "a")
	known := netip.MustParseAddrPort("127.77.1.1:80")
	have := NewState()
	have.PutBackend(1, a)
	have.PutFrontend(NewFrontendKey(known, TCP), 1, []uint32{1})
	e := newProgEnv(t, have)
	if err := e.dp.SetServiceCIDRs([]netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	h := startHelper(t, e.cgroup)

	// Nothing listens on the unknown VIPs: the connects fail (on loopback).
	h.do(helperCmd{Op: "tcp", Addr: "127.77.9.9:80", N: 5})  // reported once
	h.do(helperCmd{Op: "tcp", Addr: "127.78.0.1:80", N: 2})  // outside the CIDRs
	h.do(helperCmd{Op: "tcp", Addr: known.String(), N: 2})   // a service
	h.do(helperCmd{Op: "tcp", Addr: "127.77.9.10:81", N: 1}) // sentinel, reported last

	// Reports arrive in order: everything before the sentinel is in.
	var got []netip.AddrPort
	timeout := time.After(20 * time.Second)
	for len(got) == 0 || got[len(got)-1] != netip.MustParseAddrPort("127.77.9.10:81") {
		select {
		case ap := <-e.progs.Misses():
			got = append(got, ap)
		case <-timeout:
			t.Fatalf("no sentinel report within 20 s; got %v", got)
		}
	}
	if len(got) != 2 || got[0] != netip.MustParseAddrPort("127.77.9.9:80") {
		t.Fatalf("miss reports %v, want exactly [127.77.9.9:80 127.77.9.10:81]", got)
	}
}

func TestProgramsReinstallAndUninstall(t *testing.T) {
	a := tcpBackend(t, "a")
	vip := netip.MustParseAddrPort("127.77.1.3:80")
	have := NewState()
	have.PutBackend(1, a)
	have.PutFrontend(NewFrontendKey(vip, TCP), 1, []uint32{1})
	e := newProgEnv(t, have)
	ids := linkIDs(t, e.pin)
	if len(ids) != len(attachOrder) {
		t.Fatalf("%d pinned links, want %d", len(ids), len(attachOrder))
	}

	// A restart: the same links get the new programs.
	e.progs.Close()
	e.install(t)
	if again := linkIDs(t, e.pin); len(again) != len(ids) {
		t.Fatalf("links after reinstall: %v, before %v", again, ids)
	} else {
		for name, id := range ids {
			if again[name] != id {
				t.Errorf("%s: link %d replaced by %d, want an in-place update", name, id, again[name])
			}
		}
	}
	h := startHelper(t, e.cgroup)
	if res := h.do(helperCmd{Op: "tcp", Addr: vip.String(), N: 5}); res.Backends["a"] != 5 {
		t.Fatalf("after reinstall: %+v", res)
	}

	if err := Uninstall(e.pin); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.pin); !os.IsNotExist(err) {
		t.Errorf("pins left after uninstall: %v", err)
	}
	if res := h.do(helperCmd{Op: "tcp", Addr: vip.String(), N: 3}); res.Errors != 3 {
		t.Fatalf("after uninstall the VIP still answers: %+v", res)
	}
}

// TestProgramsLayoutSwitch: maps of a new layout are filled, then the
// programs switch to them in place, then the old layout is removed.
func TestProgramsLayoutSwitch(t *testing.T) {
	a, b := tcpBackend(t, "a"), tcpBackend(t, "b")
	vip := netip.MustParseAddrPort("127.77.1.4:80")
	old := NewState()
	old.PutBackend(1, a)
	old.PutFrontend(NewFrontendKey(vip, TCP), 1, []uint32{1})
	e := newProgEnv(t, old)
	h := startHelper(t, e.cgroup)
	if res := h.do(helperCmd{Op: "tcp", Addr: vip.String(), N: 3}); res.Backends["a"] != 3 {
		t.Fatalf("old layout: %+v", res)
	}

	dp2, err := OpenBPF(BPFOptions{PinPath: e.pin, MaxEntries: MaxEntries{Backends: 4096}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer dp2.Close()
	if len(dp2.StaleLayouts()) != 1 {
		t.Fatalf("stale layouts %v", dp2.StaleLayouts())
	}
	next := NewState()
	next.PutBackend(1, b) // distinguishable: the new maps send to b
	next.PutFrontend(NewFrontendKey(vip, TCP), 1, []uint32{1})
	mustApply(t, dp2, DiffStates(mustDump(t, dp2), next))
	// Still the old maps until the switch.
	if res := h.do(helperCmd{Op: "tcp", Addr: vip.String(), N: 3}); res.Backends["a"] != 3 {
		t.Fatalf("before the switch: %+v", res)
	}
	p2, err := Install(dp2, ProgramsOptions{CgroupPath: e.cgroup, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if err := dp2.RemoveStaleLayouts(); err != nil {
		t.Fatal(err)
	}
	if res := h.do(helperCmd{Op: "tcp", Addr: vip.String(), N: 3}); res.Backends["b"] != 3 {
		t.Fatalf("after the switch: %+v", res)
	}
}

// programRuntime returns the run count and total run time the kernel
// recorded for the program of pinned link name (zero without BPF stats).
func programRuntime(tb testing.TB, pin, name string) (uint64, time.Duration) {
	tb.Helper()
	l, err := link.LoadPinnedLink(filepath.Join(pin, "links", name), nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		tb.Fatal(err)
	}
	prog, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		tb.Fatal(err)
	}
	defer prog.Close()
	st, err := prog.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	return st.RunCount, st.Runtime
}

// linkIDs returns the kernel ids of the pinned links, by pin name.
func linkIDs(t *testing.T, pin string) map[string]link.ID {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(pin, "links"))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]link.ID{}
	for _, e := range entries {
		l, err := link.LoadPinnedLink(filepath.Join(pin, "links", e.Name()), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		ids[e.Name()] = info.ID
	}
	return ids
}

// BenchmarkConnect4 times loopback TCP connects from a process in a
// cgroup without the programs, and in one with them: to a plain address
// (a frontend miss) and to a VIP (a translation). BPF_PROG_TEST_RUN does
// not run cgroup sock_addr programs, hence whole connects. Metric:
// ns/connect as the helper measured it (ns/op includes the IPC).
func BenchmarkConnect4(b *testing.B) {
	requireCgroup2(b)
	plain := testCgroup(b)
	attached := testCgroup(b)
	be := tcpBackend(b, "x")
	vip := netip.MustParseAddrPort("127.77.2.1:80")
	pin := testPinPath(b)
	dp, err := OpenBPF(BPFOptions{PinPath: pin, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	s := NewState()
	s.PutBackend(1, be)
	s.PutFrontend(NewFrontendKey(vip, TCP), 1, []uint32{1})
	mustApply(b, dp, DiffStates(NewState(), s))
	if err := dp.SetServiceCIDRs([]netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")}); err != nil {
		b.Fatal(err)
	}
	p, err := Install(dp, ProgramsOptions{CgroupPath: attached, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.Cleanup(func() { Uninstall(pin) })
	// With BPF statistics on, the kernel also times each program run.
	if st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		defer st.Close()
	}
	for _, bc := range []struct {
		name, cgroup string
		addr         netip.AddrPort
	}{
		{"no-program", plain, be},
		{"program-miss", attached, be},
		{"program-vip", attached, vip},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := startHelper(b, bc.cgroup)
			h.do(helperCmd{Op: "bench", Addr: bc.addr.String(), N: 100}) // warm up
			runs0, time0 := programRuntime(b, pin, meshrelayProgMrConnect4)
			b.ResetTimer()
			res := h.do(helperCmd{Op: "bench", Addr: bc.addr.String(), N: b.N})
			if res.Errors != 0 {
				b.Fatalf("%d connects failed: %s", res.Errors, res.FirstErr)
			}
			b.ReportMetric(float64(res.Nanos)/float64(b.N), "ns/connect")
			if runs, rt := programRuntime(b, pin, meshrelayProgMrConnect4); runs > runs0 && bc.cgroup == attached {
				b.ReportMetric(float64(rt-time0)/float64(runs-runs0), "connect4-ns/run")
			}
		})
	}
}
