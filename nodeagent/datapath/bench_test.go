package datapath

import (
	"context"
	"testing"
)

// benchState is 10,000 entries as a node holds them: 2,000 services with
// three backends each, shared with the neighbouring services (2,000
// frontends, 6,000 slots, 2,000 backends).
func benchState() State {
	s := NewState()
	for i := range 2000 {
		key := NewFrontendKey(vip(i, 80), TCP)
		table := []uint32{uint32(i + 1), uint32((i+1)%2000 + 1), uint32((i+2)%2000 + 1)}
		s.PutBackend(uint32(i+1), backendAddr(uint32(i+1)))
		s.PutFrontend(key, uint32(i+1), table)
	}
	return s
}

// BenchmarkApply10k applies 10,000 entries per op, batched against one
// Map.Update per entry (NoBatch), and in the in-memory model:
//
//   - insert: new keys into empty maps (they are deleted again outside
//     the timer), which includes the kernel's per-element allocation of
//     BPF_F_NO_PREALLOC maps;
//   - overwrite: the same keys rewritten in place.
//
// Custom metrics: syscalls per 1,000 entries, and the worst map's syscalls
// per 1,000 of its entries.
func BenchmarkApply10k(b *testing.B) {
	want := benchState()
	if want.Len() != 10000 {
		b.Fatalf("bench state has %d entries", want.Len())
	}
	add := DiffStates(NewState(), want)
	del := DiffStates(want, NewState())
	for _, bc := range []struct {
		name      string
		bpf       bool
		overwrite bool
		opts      testOptions
	}{
		{"insert/bpf-batch", true, false, testOptions{}},
		{"insert/bpf-single", true, false, testOptions{NoBatch: true}},
		{"insert/memory-batch", false, false, testOptions{}},
		{"overwrite/bpf-batch", true, true, testOptions{}},
		{"overwrite/bpf-single", true, true, testOptions{NoBatch: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var dp Datapath
			if bc.bpf {
				dp = openBPF(b, bc.opts)
			} else {
				dp = openMemory(b, bc.opts)
			}
			ctx := context.Background()
			if bc.overwrite {
				mustApply(b, dp, add)
			}
			before := dp.Stats()
			var syscalls int
			b.ResetTimer()
			for range b.N {
				st, err := dp.Apply(ctx, add)
				if err != nil {
					b.Fatal(err)
				}
				syscalls += st.Syscalls
				if !bc.overwrite {
					b.StopTimer()
					if _, err := dp.Apply(ctx, del); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(syscalls)/float64(b.N)/10, "syscalls/1k-entries")
			after, worst := dp.Stats(), 0.0
			for i, m := range after.Maps {
				if n := m.Updates - before.Maps[i].Updates; n > 0 {
					upserts := float64(m.Syscalls - before.Maps[i].Syscalls)
					if !bc.overwrite {
						upserts /= 2 // as many delete syscalls as upsert ones
					}
					worst = max(worst, upserts/(float64(n)/1000))
				}
			}
			b.ReportMetric(worst, "max-map-syscalls/1k-entries")
		})
	}
}
