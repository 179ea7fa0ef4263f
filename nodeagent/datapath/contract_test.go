package datapath

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// The contract every Datapath keeps; run against Memory and BPF, with the
// same exact syscall counts (Memory models BPF's accounting).

func TestContractMemory(t *testing.T) { runContract(t, openMemory) }

func TestContractBPF(t *testing.T) {
	requireBPF(t)
	runContract(t, openBPF)
}

func runContract(t *testing.T, open factory) {
	t.Run("RoundTrip", func(t *testing.T) { contractRoundTrip(t, open) })
	t.Run("Idempotent", func(t *testing.T) { contractIdempotent(t, open) })
	t.Run("MinimalChange", func(t *testing.T) { contractMinimalChange(t, open) })
	t.Run("MakeBeforeBreak", func(t *testing.T) { contractMakeBeforeBreak(t, open) })
	t.Run("BatchSyscalls", func(t *testing.T) { contractBatchSyscalls(t, open) })
	t.Run("DeleteMissing", func(t *testing.T) { contractDeleteMissing(t, open) })
	t.Run("MapFull", func(t *testing.T) { contractMapFull(t, open) })
	t.Run("PartialBatchResume", func(t *testing.T) { contractPartialBatchResume(t, open) })
	t.Run("Canceled", func(t *testing.T) { contractCanceled(t, open) })
}

func mustApply(t testing.TB, dp Datapath, cs ChangeSet) ApplyStats {
	t.Helper()
	st, err := dp.Apply(context.Background(), cs)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return st
}

func mustDump(t testing.TB, dp Datapath) State {
	t.Helper()
	s, err := dp.Dump(context.Background())
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return s
}

func contractRoundTrip(t *testing.T, open factory) {
	dp := open(t, testOptions{})
	want := stateOf(services(300, 5), nil)
	if err := want.Check(); err != nil {
		t.Fatalf("test state inconsistent: %v", err)
	}
	cs := DiffStates(NewState(), want)
	st := mustApply(t, dp, cs)
	if st.Updates != want.Len() || st.Deletes != 0 {
		t.Errorf("apply stats %+v, want %d updates", st, want.Len())
	}
	got := mustDump(t, dp)
	if !got.Equal(want) {
		t.Fatalf("dump differs from applied state: %d/%d/%d entries, want %d/%d/%d",
			len(got.Frontends), len(got.Slots), len(got.Backends), len(want.Frontends), len(want.Slots), len(want.Backends))
	}
	stats := dp.Stats()
	for name, n := range map[string]int{MapFrontends: 300, MapSlots: 1500, MapBackends: 1500} {
		if e := stats.Map(name).Entries; e != n {
			t.Errorf("%s: Stats entries %d, want %d", name, e, n)
		}
	}
	// Everything removed again.
	mustApply(t, dp, DiffStates(got, NewState()))
	if got := mustDump(t, dp); got.Len() != 0 {
		t.Errorf("after removing everything, dump holds %d entries", got.Len())
	}
}

func contractIdempotent(t *testing.T, open factory) {
	dp := open(t, testOptions{})
	want := stateOf(services(20, 3), nil)
	cs := DiffStates(NewState(), want)
	mustApply(t, dp, cs)
	// The same change set again: upserts overwrite, deletes of missing keys succeed.
	mustApply(t, dp, cs)
	mustApply(t, dp, DiffStates(want, NewState()))
	mustApply(t, dp, DiffStates(want, NewState()))
	mustApply(t, dp, cs)
	got := mustDump(t, dp)
	if !got.Equal(want) {
		t.Fatal("state after repeated applies differs")
	}
	if d := DiffStates(got, want); !d.Empty() {
		t.Fatalf("diff of identical states has %d entries", d.Len())
	}
	before := dp.Stats()
	st := mustApply(t, dp, ChangeSet{})
	if st != (ApplyStats{}) {
		t.Errorf("empty change set: %+v, want no work", st)
	}
	after := dp.Stats()
	for i := range after.Maps {
		if after.Maps[i].Syscalls != before.Maps[i].Syscalls {
			t.Errorf("%s: empty change set made %d syscalls", after.Maps[i].Name, after.Maps[i].Syscalls-before.Maps[i].Syscalls)
		}
	}
}

func contractMinimalChange(t *testing.T, open factory) {
	dp := open(t, testOptions{})
	svcs := services(50, 4)
	have := stateOf(svcs, nil)
	mustApply(t, dp, DiffStates(NewState(), have))

	// One backend of one service replaced by a new one.
	svcs[7].backends[1] = WeightedBackend{ID: 9001, Weight: 1}
	want := stateOf(svcs, &have)
	cs := DiffStates(have, want)
	// New backend, one slot rewritten, old backend trimmed.
	if cs.Len() != 3 || len(cs.UpsertBackends) != 1 || len(cs.UpsertSlots) != 1 || len(cs.TrimBackends) != 1 {
		t.Fatalf("replacing one backend: %+v", cs)
	}
	st := mustApply(t, dp, cs)
	if st.Syscalls != 3 {
		t.Errorf("replacing one backend took %d syscalls, want 3 (one per map op)", st.Syscalls)
	}
	if got := mustDump(t, dp); !got.Equal(want) {
		t.Fatal("dump differs after replacing one backend")
	}

	// One backend removed: a handful of entries, not a rewrite of the service.
	have = want
	svcs[7].backends = append(svcs[7].backends[:0:0], svcs[7].backends[:1]...)
	svcs[7].backends = append(svcs[7].backends, services(50, 4)[7].backends[2:]...)
	want = stateOf(svcs, &have)
	cs = DiffStates(have, want)
	if cs.Len() > 4 {
		t.Fatalf("removing one backend of four: %d entries, want at most 4: %+v", cs.Len(), cs)
	}
	mustApply(t, dp, cs)
	if got := mustDump(t, dp); !got.Equal(want) {
		t.Fatal("dump differs after removing one backend")
	}
}

// contractMakeBeforeBreak replays every write syscall onto a model of the
// maps and checks that the model is consistent after each one.
func contractMakeBeforeBreak(t *testing.T, open factory) {
	var writes []Write
	record := func(w Write) {
		// Entries is only valid during the callback.
		switch e := w.Entries.(type) {
		case []Frontend:
			w.Entries = append([]Frontend(nil), e...)
		case []Slot:
			w.Entries = append([]Slot(nil), e...)
		case []Backend:
			w.Entries = append([]Backend(nil), e...)
		case []FrontendKey:
			w.Entries = append([]FrontendKey(nil), e...)
		case []SlotKey:
			w.Entries = append([]SlotKey(nil), e...)
		case []BackendKey:
			w.Entries = append([]BackendKey(nil), e...)
		}
		writes = append(writes, w)
	}
	dp := open(t, testOptions{BatchSize: 7, Trace: record})

	svcs := services(12, 6)
	have := stateOf(svcs, nil)
	mustApply(t, dp, DiffStates(NewState(), have))

	// A flush that does everything at once.
	svcs = append(svcs[:2], svcs[4:]...)                                              // two services removed
	svcs[0].backends = svcs[0].backends[:2]                                           // shrunk
	svcs[1].backends = append(svcs[1].backends, WeightedBackend{ID: 5000, Weight: 3}) // grown, weighted
	svcs[2].backends[3] = WeightedBackend{ID: 5001, Weight: 1}                        // one replaced
	svcs[3].id = 77                                                                   // frontend id changed
	svcs[4].backends = nil                                                            // no backends left
	for i := range 3 {                                                                // services added
		svcs = append(svcs, testService{key: NewFrontendKey(vip(100+i, 443), TCP), id: uint32(200 + i),
			backends: []WeightedBackend{{ID: uint32(6000 + i), Weight: 1}, {ID: 5000, Weight: 1}}})
	}
	want := stateOf(svcs, &have)
	if err := want.Check(); err != nil {
		t.Fatalf("want inconsistent: %v", err)
	}
	cs := DiffStates(have, want)

	writes = nil
	mustApply(t, dp, cs)
	if len(writes) == 0 {
		t.Fatal("no writes traced")
	}
	model := have.Clone()
	order := []string{MapFrontends, MapSlots, MapBackends} // early deletes
	last, sawUpsert := 0, false
	for i, w := range writes {
		switch e := w.Entries.(type) {
		case []Frontend:
			for _, x := range e[:w.Applied] {
				model.Frontends[x.Key] = x.Value
			}
		case []Slot:
			for _, x := range e[:w.Applied] {
				model.Slots[x.Key] = x.Value
			}
		case []Backend:
			for _, x := range e[:w.Applied] {
				model.Backends[x.Key] = x.Value
			}
		case []FrontendKey:
			for _, k := range e[:w.Applied] {
				delete(model.Frontends, k)
			}
		case []SlotKey:
			for _, k := range e[:w.Applied] {
				delete(model.Slots, k)
			}
		case []BackendKey:
			for _, k := range e[:w.Applied] {
				delete(model.Backends, k)
			}
		}
		if err := model.Check(); err != nil {
			t.Fatalf("after write %d (%s delete=%v): datapath inconsistent: %v", i, w.Map, w.Delete, err)
		}
		// The order of ChangeSet's fields, never going back.
		step := slices.Index(order, w.Map)
		switch {
		case !w.Delete:
			step = 3 + slices.Index([]string{MapBackends, MapSlots, MapFrontends}, w.Map)
			sawUpsert = true
		case sawUpsert:
			step = 6 + slices.Index([]string{MapSlots, MapBackends}, w.Map)
		}
		if step < last {
			t.Fatalf("write %d (%s delete=%v) is step %d, after step %d", i, w.Map, w.Delete, step, last)
		}
		last = step
	}
	if !model.Equal(want) {
		t.Fatal("replayed writes do not give the wanted state")
	}
	if got := mustDump(t, dp); !got.Equal(want) {
		t.Fatal("dump differs from wanted state")
	}
}

func contractBatchSyscalls(t *testing.T, open factory) {
	want := NewState()
	for i := range uint32(1000) {
		want.PutBackend(i+1, backendAddr(i+1))
	}
	cs := DiffStates(NewState(), want)
	for _, tc := range []struct {
		name              string
		opts              testOptions
		syscalls, batches int
	}{
		{"batch100", testOptions{BatchSize: 100}, 10, 10},
		{"batch4096", testOptions{}, 1, 1},
		{"single", testOptions{NoBatch: true}, 1000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp := open(t, tc.opts)
			st := mustApply(t, dp, cs)
			if st.Syscalls != tc.syscalls || st.Batches != tc.batches || st.Updates != 1000 {
				t.Errorf("apply: %+v, want %d syscalls, %d batches, 1000 updates", st, tc.syscalls, tc.batches)
			}
			ms := dp.Stats().Map(MapBackends)
			if ms.Syscalls != uint64(tc.syscalls) || ms.Updates != 1000 || ms.Entries != 1000 {
				t.Errorf("map stats: %+v", ms)
			}
		})
	}
}

func contractDeleteMissing(t *testing.T, open factory) {
	dp := open(t, testOptions{})
	s := NewState()
	for _, id := range []uint32{1, 2, 4, 6} {
		s.PutBackend(id, backendAddr(id))
	}
	mustApply(t, dp, DiffStates(NewState(), s))
	// 3 and 5 are missing: each stops a batch, which resumes after it.
	st := mustApply(t, dp, ChangeSet{TrimBackends: backendKeys(1, 2, 3, 4, 5, 6)})
	if st.Deletes != 4 || st.Syscalls != 3 {
		t.Errorf("delete with missing keys: %+v, want 4 deletes in 3 syscalls", st)
	}
	if got := mustDump(t, dp); got.Len() != 0 {
		t.Errorf("%d entries left", got.Len())
	}
}

func contractMapFull(t *testing.T, open factory) {
	dp := open(t, testOptions{MaxEntries: MaxEntries{Backends: 50}})
	want := NewState()
	for i := range uint32(60) {
		want.PutBackend(i+1, backendAddr(i+1))
	}
	st, err := dp.Apply(context.Background(), DiffStates(NewState(), want))
	if !errors.Is(err, ErrMapFull) {
		t.Fatalf("apply over capacity: err %v, want ErrMapFull", err)
	}
	// The partial batch is resumed once; the retry makes no progress.
	if st.Updates != 50 || st.Syscalls != 2 {
		t.Errorf("apply over capacity: %+v, want 50 updates in 2 syscalls", st)
	}
	if got := mustDump(t, dp); len(got.Backends) != 50 {
		t.Errorf("%d backends held, want 50", len(got.Backends))
	}
}

func contractPartialBatchResume(t *testing.T, open factory) {
	dp := open(t, testOptions{BatchSize: 10})
	want := stateOf(services(5, 5), nil)
	cs := DiffStates(NewState(), want)

	// Batches: 25 backends (3), 25 slots (3), 5 frontends (1). Write the
	// first four and 4 of the 10 entries of the fifth (the second slot
	// batch), as an Apply whose batch stops at a bad entry would.
	batches := cs.Batches(10)
	if len(batches) != 7 || batches[4].Len() != 10 {
		t.Fatalf("cut into %d batches, want 7 with 10 entries in the fifth", len(batches))
	}
	var st ApplyStats
	for _, b := range batches[:4] {
		st = st.Add(mustApply(t, dp, b.All()))
	}
	st = st.Add(mustApply(t, dp, batches[4].Slice(0, 4)))
	if st.Updates != 25+10+4 {
		t.Errorf("before the fault %d updates landed, want 39", st.Updates)
	}
	got := mustDump(t, dp)
	if err := got.Check(); err != nil {
		t.Fatalf("datapath inconsistent after a partial batch: %v", err)
	}
	// The agent resumes by re-diffing against what the kernel holds.
	rest := DiffStates(got, want)
	if rest.Len() != cs.Len()-39 {
		t.Errorf("resume change set has %d entries, want %d", rest.Len(), cs.Len()-39)
	}
	st = mustApply(t, dp, rest)
	if st.Updates != rest.Len() {
		t.Errorf("resume wrote %d entries, want %d", st.Updates, rest.Len())
	}
	if got := mustDump(t, dp); !got.Equal(want) {
		t.Fatal("state after resume differs")
	}
}

func contractCanceled(t *testing.T, open factory) {
	dp := open(t, testOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, err := dp.Apply(ctx, DiffStates(NewState(), stateOf(services(3, 2), nil)))
	if !errors.Is(err, context.Canceled) || st.Syscalls != 0 {
		t.Fatalf("apply with canceled context: %+v, %v", st, err)
	}
}
