package datapath

import (
	"slices"
	"testing"
)

// TestBatchesCutInApplyOrder: Batches cuts each field into chunks of the
// batch size, in ChangeSet's order, and together they are the change set.
func TestBatchesCutInApplyOrder(t *testing.T) {
	have := stateOf(services(3, 4), nil)
	want := stateOf(services(5, 5)[2:], nil)
	cs := DiffStates(have, want)
	if len(cs.DeleteFrontends) == 0 || len(cs.UpsertBackends) == 0 {
		t.Fatalf("test change set lacks removals or additions: %+v", cs)
	}

	const size = 3
	var lens []int
	var rebuilt ChangeSet
	for _, b := range cs.Batches(size) {
		if b.Len() < 1 || b.Len() > size {
			t.Fatalf("batch of %d entries, want 1..%d", b.Len(), size)
		}
		lens = append(lens, b.Len())
		part := b.All()
		if part.Len() != b.Len() {
			t.Fatalf("All holds %d entries, batch %d", part.Len(), b.Len())
		}
		if tail := b.Slice(1, b.Len()); tail.Len() != b.Len()-1 {
			t.Fatalf("Slice(1, %d) holds %d entries", b.Len(), tail.Len())
		}
		rebuilt.DeleteFrontends = append(rebuilt.DeleteFrontends, part.DeleteFrontends...)
		rebuilt.DeleteSlots = append(rebuilt.DeleteSlots, part.DeleteSlots...)
		rebuilt.DeleteBackends = append(rebuilt.DeleteBackends, part.DeleteBackends...)
		rebuilt.UpsertBackends = append(rebuilt.UpsertBackends, part.UpsertBackends...)
		rebuilt.UpsertSlots = append(rebuilt.UpsertSlots, part.UpsertSlots...)
		rebuilt.UpsertFrontends = append(rebuilt.UpsertFrontends, part.UpsertFrontends...)
		rebuilt.TrimSlots = append(rebuilt.TrimSlots, part.TrimSlots...)
		rebuilt.TrimBackends = append(rebuilt.TrimBackends, part.TrimBackends...)
	}
	var wantLens []int
	for _, n := range []int{len(cs.DeleteFrontends), len(cs.DeleteSlots), len(cs.DeleteBackends),
		len(cs.UpsertBackends), len(cs.UpsertSlots), len(cs.UpsertFrontends),
		len(cs.TrimSlots), len(cs.TrimBackends)} {
		for ; n > 0; n -= size {
			wantLens = append(wantLens, min(n, size))
		}
	}
	if !slices.Equal(lens, wantLens) {
		t.Fatalf("batch sizes %v, want %v", lens, wantLens)
	}
	if !slices.Equal(rebuilt.DeleteFrontends, cs.DeleteFrontends) || !slices.Equal(rebuilt.DeleteSlots, cs.DeleteSlots) ||
		!slices.Equal(rebuilt.DeleteBackends, cs.DeleteBackends) || !slices.Equal(rebuilt.UpsertBackends, cs.UpsertBackends) ||
		!slices.Equal(rebuilt.UpsertSlots, cs.UpsertSlots) || !slices.Equal(rebuilt.UpsertFrontends, cs.UpsertFrontends) ||
		!slices.Equal(rebuilt.TrimSlots, cs.TrimSlots) || !slices.Equal(rebuilt.TrimBackends, cs.TrimBackends) {
		t.Fatal("the batches joined in order are not the change set")
	}
}

// TestBatchesDefaultSize: a size <= 0 cuts at DefaultBatchSize, and an
// empty change set has no batches.
func TestBatchesDefaultSize(t *testing.T) {
	if n := len((ChangeSet{}).Batches(0)); n != 0 {
		t.Fatalf("empty change set cut into %d batches", n)
	}
	keys := make([]SlotKey, DefaultBatchSize+1)
	for i := range keys {
		keys[i] = SlotKey{FrontendId: 1, Slot: uint32(i)}
	}
	bs := ChangeSet{DeleteSlots: keys}.Batches(0)
	if len(bs) != 2 || bs[0].Len() != DefaultBatchSize || bs[1].Len() != 1 {
		t.Fatalf("cut %d keys into %d batches", len(keys), len(bs))
	}
}
