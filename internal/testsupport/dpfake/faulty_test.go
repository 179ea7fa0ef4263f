package dpfake

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// opener opens a fresh, empty datapath with the given batch size that the
// test closes.
type opener func(t *testing.T, batchSize int) datapath.Datapath

func openMemory(t *testing.T, batchSize int) datapath.Datapath {
	m := datapath.NewMemory(datapath.MemoryOptions{BatchSize: batchSize})
	t.Cleanup(func() { m.Close() })
	return m
}

func openBPF(t *testing.T, batchSize int) datapath.Datapath {
	b, err := datapath.OpenBPF(datapath.BPFOptions{PinPath: PinDir(t, "meshrelay-dpfake-"), BatchSize: batchSize})
	if err != nil {
		t.Fatalf("open bpf datapath: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// fiveByFive is 5 services with 5 backends of their own each, VIPs in
// 127.77.0.0/16: 25 backends, 25 slots and 5 frontends.
func fiveByFive() datapath.State {
	s := datapath.NewState()
	for i := range 5 {
		var table []uint32
		for j := range 5 {
			id := uint32(i*5 + j + 1)
			s.PutBackend(id, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(id)}), 8080))
			table = append(table, id)
		}
		vip := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, 0, byte(i + 1)}), 80)
		s.PutFrontend(datapath.NewFrontendKey(vip, datapath.TCP), uint32(i+1), table)
	}
	return s
}

func TestFaultyPartialBatchMemory(t *testing.T) { testFaultyPartialBatch(t, openMemory) }

func TestFaultyPartialBatchBPF(t *testing.T) { testFaultyPartialBatch(t, openBPF) }

// testFaultyPartialBatch: Faulty fails the n-th batch once after applying
// part of it, leaving exactly the earlier batches and that part in the
// wrapped datapath; the next Apply goes through.
func testFaultyPartialBatch(t *testing.T, open opener) {
	ctx := context.Background()
	inner := open(t, 10)
	// Batches: 25 backends (3), 25 slots (3), 5 frontends (1). Batch 5 is
	// the second slot batch; 4 of its 10 entries land.
	dp := NewFaulty(inner, FaultOptions{BatchSize: 10, FailNthBatch: 5, PartialBatch: 4})
	want := fiveByFive()
	cs := datapath.DiffStates(datapath.NewState(), want)

	st, err := dp.Apply(ctx, cs)
	if !errors.Is(err, ErrInjected) {
		t.Fatalf("apply: %v, want injected fault", err)
	}
	if st.Updates != 25+10+4 {
		t.Errorf("before the fault %d updates landed, want 39", st.Updates)
	}
	model := datapath.NewState()
	batches := cs.Batches(10)
	for _, b := range batches[:4] {
		b.All().ApplyTo(model)
	}
	batches[4].Slice(0, 4).ApplyTo(model)
	got, err := dp.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(model) {
		t.Fatalf("after the fault the datapath holds %d entries, want the 39 of the first batches", got.Len())
	}

	// The fault fires once: the resume goes through.
	rest := datapath.DiffStates(got, want)
	st, err = dp.Apply(ctx, rest)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if st.Updates != rest.Len() || rest.Len() != cs.Len()-39 {
		t.Errorf("resume wrote %d of %d entries, want %d", st.Updates, rest.Len(), cs.Len()-39)
	}
	if got, err := dp.Dump(ctx); err != nil || !got.Equal(want) {
		t.Fatalf("state after resume differs (%d entries, want %d; %v)", got.Len(), want.Len(), err)
	}
	if n := dp.Stats().Map(datapath.MapBackends).Updates; n != 25 {
		t.Errorf("Stats through Faulty count %d backend updates, want 25", n)
	}
}

// TestFaultyAttachIsTheWrapped: Attach goes to the wrapped datapath.
func TestFaultyAttachIsTheWrapped(t *testing.T) {
	m := datapath.NewMemory(datapath.MemoryOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewFaulty(m, FaultOptions{}).Attach(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Attach with a canceled context through Faulty: %v", err)
	}
}

func TestFaultOptionsValidate(t *testing.T) {
	if err := (FaultOptions{FailNthBatch: 2, PartialBatch: 1}).Validate(); err != nil {
		t.Fatalf("valid options rejected: %v", err)
	}
	if err := (FaultOptions{PartialBatch: -1}).Validate(); err == nil {
		t.Fatal("negative PartialBatch accepted")
	}
}
