package datapath

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

func TestBPFPinsSurviveReopen(t *testing.T) {
	pin := testPinPath(t)
	opts := BPFOptions{PinPath: pin, Logger: quietLogger()}
	b, err := OpenBPF(opts)
	if err != nil {
		t.Fatal(err)
	}
	want := stateOf(services(100, 4), nil)
	mustApply(t, b, DiffStates(NewState(), want))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.PinDir(), MapFrontends)); err != nil {
		t.Fatalf("pin gone after Close: %v", err)
	}

	// A restarted agent dumps, diffs, and has nothing to write.
	b2, err := OpenBPF(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if b2.PinDir() != b.PinDir() || len(b2.StaleLayouts()) != 0 {
		t.Fatalf("reopen used %s (stale %v), want %s", b2.PinDir(), b2.StaleLayouts(), b.PinDir())
	}
	got := mustDump(t, b2)
	if !got.Equal(want) {
		t.Fatalf("reopened maps hold %d entries, want %d", got.Len(), want.Len())
	}
	cs := DiffStates(got, want)
	st := mustApply(t, b2, cs)
	if !cs.Empty() || st.Syscalls != 0 {
		t.Fatalf("unchanged restart wrote %d entries in %d syscalls", cs.Len(), st.Syscalls)
	}
	if r := b2.Stats().Map(MapFrontends).ReadSyscalls; r == 0 || r > 2 {
		t.Errorf("dumping 100 frontends took %d lookups, want 1-2 batches", r)
	}
}

func TestBPFMapFlags(t *testing.T) {
	pin := testPinPath(t)
	b, err := OpenBPF(BPFOptions{PinPath: pin, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, name := range []string{MapFrontends, MapSlots, MapBackends, "service_cidrs"} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(b.PinDir(), name), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := m.Info()
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		if info.Flags&flagNoPrealloc == 0 {
			t.Errorf("%s: flags %#x lack BPF_F_NO_PREALLOC", name, info.Flags)
		}
	}
	// The map starts small and may grow to the configured limit (resize.go).
	if ms := b.Stats().Map(MapBackends); ms.Limit != DefaultMaxBackends || ms.MaxEntries != minMapEntries || ms.Flags&flagNoPrealloc == 0 {
		t.Errorf("stats: %+v", ms)
	}
}

func TestBPFLayoutChange(t *testing.T) {
	pin := testPinPath(t)
	old, err := OpenBPF(BPFOptions{PinPath: pin, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, old, DiffStates(NewState(), stateOf(services(3, 2), nil)))
	old.Close()

	// Different sizes are a different layout: fresh maps beside the old.
	b, err := OpenBPF(BPFOptions{PinPath: pin, MaxEntries: MaxEntries{Backends: 1024}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.PinDir() == old.PinDir() || !slices.Equal(b.StaleLayouts(), []string{old.PinDir()}) {
		t.Fatalf("new layout in %s, stale %v; old %s", b.PinDir(), b.StaleLayouts(), old.PinDir())
	}
	if got := mustDump(t, b); got.Len() != 0 {
		t.Fatalf("new layout starts with %d entries, want a rebuild from empty", got.Len())
	}
	if _, err := os.Stat(filepath.Join(old.PinDir(), MapFrontends)); err != nil {
		t.Fatalf("old layout removed before the switch: %v", err)
	}
	if err := b.RemoveStaleLayouts(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old.PinDir()); !os.IsNotExist(err) {
		t.Fatalf("stale layout still there: %v", err)
	}
}

func TestBPFServiceCIDRs(t *testing.T) {
	b, err := OpenBPF(BPFOptions{PinPath: testPinPath(t), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	read := func() []string {
		var out []string
		var k meshrelayCidrKey
		var v uint8
		it := b.maps["service_cidrs"].Iterate()
		for it.Next(&k, &v) {
			out = append(out, fmt.Sprintf("%s/%d", netip.AddrFrom16(k.Addr), k.Prefixlen))
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	if err := b.SetServiceCIDRs([]netip.Prefix{netip.MustParsePrefix("127.77.0.0/16"), netip.MustParsePrefix("fd00:77::/64")}); err != nil {
		t.Fatal(err)
	}
	if got := read(); !slices.Equal(got, []string{"::ffff:127.77.0.0/112", "fd00:77::/64"}) {
		t.Fatalf("cidrs %v", got)
	}
	if err := b.SetServiceCIDRs([]netip.Prefix{netip.MustParsePrefix("127.78.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	if got := read(); !slices.Equal(got, []string{"::ffff:127.78.0.0/112"}) {
		t.Fatalf("cidrs after replace %v", got)
	}
}

// TestBPFMemlockLinear checks the kernel's memlock figure for a
// BPF_F_NO_PREALLOC map follows the entries held, and that Memory's model
// agrees with it.
func TestBPFMemlockLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 50,000 entries")
	}
	b, err := OpenBPF(BPFOptions{PinPath: testPinPath(t), MaxEntries: MaxEntries{Backends: 65536}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ns := []int{0, 1000, 5000, 10000, 25000, 50000}
	var mems []uint64
	have := NewState()
	for _, n := range ns {
		want := have.Clone()
		for id := len(have.Backends); id < n; id++ {
			want.PutBackend(uint32(id+1), backendAddr(uint32(id+1)))
		}
		mustApply(t, b, DiffStates(have, want))
		have = want
		ms := b.Stats().Map(MapBackends)
		if ms.MemlockBytes == 0 || ms.Entries != n {
			t.Fatalf("at %d entries: memlock %d, entries %d (kernel < 6.4?)", n, ms.MemlockBytes, ms.Entries)
		}
		mems = append(mems, ms.MemlockBytes)
		model := modelMemlock(n, ms.MaxEntries, 4, 20)
		t.Logf("%6d entries: memlock %9d B, model %9d B", n, ms.MemlockBytes, model)
		if n > 0 && math.Abs(float64(model)-float64(ms.MemlockBytes)) > 0.02*float64(ms.MemlockBytes) {
			t.Errorf("at %d entries Memory's model says %d B, the kernel %d B", n, model, ms.MemlockBytes)
		}
	}
	// An empty map costs next to nothing: it starts small (resize.go).
	if mems[0] > 4096 {
		t.Errorf("empty map: memlock %d B", mems[0])
	}
	// The map grows in powers of two, so its bucket array steps; memlock
	// stays within 2x of entries x the per-element cost (the element, its
	// header and allocator node, as modelMemlock counts them).
	perElem := float64(modelMemlock(1, 64, 4, 20) - modelMemlock(0, 64, 4, 20))
	for i, n := range ns[1:] {
		if per := float64(mems[i+1]) / float64(n); per < perElem || per > 2*perElem {
			t.Errorf("at %d entries: %.0f B per entry, want %.0f..%.0f", n, per, perElem, 2*perElem)
		}
	}
}

// checkLinear fits mem = a + b*n by least squares and fails if the slope b
// is outside [minSlope, maxSlope] bytes per entry, or if any point is off
// the fit by more than 5 % of the fitted value.
func checkLinear(ns []int, mems []uint64, minSlope, maxSlope float64) error {
	var sx, sy, sxx, sxy float64
	k := float64(len(ns))
	for i := range ns {
		x, y := float64(ns[i]), float64(mems[i])
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	slope := (k*sxy - sx*sy) / (k*sxx - sx*sx)
	icept := (sy - slope*sx) / k
	if slope < minSlope || slope > maxSlope {
		return fmt.Errorf("memory grows %.1f B per entry, want %.0f..%.0f", slope, minSlope, maxSlope)
	}
	for i := range ns {
		fit := icept + slope*float64(ns[i])
		if dev := math.Abs(float64(mems[i])-fit) / fit; dev > 0.05 {
			return fmt.Errorf("at %d entries memory is %d B, %.1f %% off the linear fit %.0f B", ns[i], mems[i], 100*dev, fit)
		}
	}
	return nil
}

func TestCheckLinear(t *testing.T) {
	ns := []int{0, 1000, 5000, 10000, 25000, 50000}
	linear := make([]uint64, len(ns))
	steps := make([]uint64, len(ns))
	flat := make([]uint64, len(ns))
	for i, n := range ns {
		linear[i] = 1<<20 + uint64(n)*88 + uint64(i%2)*4096 // a page of noise
		// Kmesh-like: memory grows in slabs of 32,768 entries.
		steps[i] = 1<<20 + uint64((n+32767)/32768)*32768*88
		flat[i] = 20 << 20 // preallocated
	}
	if err := checkLinear(ns, linear, 24, 512); err != nil {
		t.Errorf("linear growth rejected: %v", err)
	}
	if err := checkLinear(ns, steps, 24, 512); err == nil {
		t.Error("slab-stepped growth accepted")
	}
	if err := checkLinear(ns, flat, 24, 512); err == nil {
		t.Error("preallocated (flat) memory accepted")
	}
}

func TestBPFDumpCanceled(t *testing.T) {
	b, err := OpenBPF(BPFOptions{PinPath: testPinPath(t), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Dump(ctx); err == nil {
		t.Fatal("dump with a canceled context succeeded")
	}
}
