package datapath

import (
	"testing"
)

// pinnedMemlock returns the kernel's memlock figure of every pinned map of
// b and their sum.
func pinnedMemlock(t testing.TB, b *BPF) (map[string]uint64, uint64) {
	t.Helper()
	per := map[string]uint64{}
	var total uint64
	for _, ms := range b.Stats().Maps {
		if ms.MemlockBytes == 0 && ms.Name != "service_cidrs" { // an empty LPM trie reports 0
			t.Fatalf("%s: no memlock figure from the kernel (Linux < 6.4?)", ms.Name)
		}
		per[ms.Name] = ms.MemlockBytes
		total += ms.MemlockBytes
	}
	return per, total
}

// TestBPFMemlockByServices measures the kernel memlock of the pinned maps
// of a node holding 10 .. 10,000 services of 10 backends each (21 entries
// a service), logs it per map, and checks that memory follows what the
// node holds: 10 services pin at most 2 MiB in all (the fixed LRU maps
// included), and 1,000 services at least 4 times what 100 do.
func TestBPFMemlockByServices(t *testing.T) {
	counts := []int{10, 100, 1000, 10000}
	if testing.Short() {
		counts = counts[:3]
	}
	totals := map[int]uint64{}
	for _, n := range counts {
		b, err := OpenBPF(BPFOptions{PinPath: testPinPath(t), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		want := stateOf(services(n, 10), nil)
		mustApply(t, b, DiffStates(NewState(), want))
		per, total := pinnedMemlock(t, b)
		totals[n] = total
		t.Logf("%6d services, %7d entries: memlock %8d KiB %v", n, want.Len(), total>>10, per)
		b.Close()
	}
	if totals[10] > 2<<20 {
		t.Errorf("10 services pin %d KiB, want at most 2 MiB", totals[10]>>10)
	}
	if r := float64(totals[1000]) / float64(totals[100]); r < 4 {
		t.Errorf("memlock(1,000 services) / memlock(100) = %.2f, want >= 4", r)
	}
}
