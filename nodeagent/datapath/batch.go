package datapath

// Batch is one batch of a change set as Apply cuts it: at most the batch
// size of entries of a single ChangeSet field, which Apply writes with one
// batch syscall when none of them fails.
type Batch struct {
	n     int
	slice func(lo, hi int) ChangeSet
}

// Len is the number of entries in the batch.
func (b Batch) Len() int { return b.n }

// Slice returns entries [lo, hi) of the batch as a change set holding only
// them, in the batch's field. It panics unless 0 <= lo <= hi <= b.Len().
func (b Batch) Slice(lo, hi int) ChangeSet { return b.slice(lo, hi) }

// All returns the whole batch as a change set.
func (b Batch) All() ChangeSet { return b.slice(0, b.n) }

// Batches cuts cs into the batches Apply writes with batch size size (at
// most size entries each, DefaultBatchSize when size <= 0), in Apply's
// order: field by field in ChangeSet's order, each field in chunks of size
// from its start. Applying the batches one after the other writes what
// applying cs writes. Apply itself resumes a batch the kernel applied only
// partly from the first entry it did not apply, so after a partial batch
// its later syscalls no longer line up with these cuts.
func (cs ChangeSet) Batches(size int) []Batch {
	if size <= 0 {
		size = DefaultBatchSize
	}
	var out []Batch
	out = appendBatches(out, cs.DeleteFrontends, size, func(c *ChangeSet, s []FrontendKey) { c.DeleteFrontends = s })
	out = appendBatches(out, cs.DeleteSlots, size, func(c *ChangeSet, s []SlotKey) { c.DeleteSlots = s })
	out = appendBatches(out, cs.DeleteBackends, size, func(c *ChangeSet, s []BackendKey) { c.DeleteBackends = s })
	out = appendBatches(out, cs.UpsertBackends, size, func(c *ChangeSet, s []Backend) { c.UpsertBackends = s })
	out = appendBatches(out, cs.UpsertSlots, size, func(c *ChangeSet, s []Slot) { c.UpsertSlots = s })
	out = appendBatches(out, cs.UpsertFrontends, size, func(c *ChangeSet, s []Frontend) { c.UpsertFrontends = s })
	out = appendBatches(out, cs.TrimSlots, size, func(c *ChangeSet, s []SlotKey) { c.TrimSlots = s })
	out = appendBatches(out, cs.TrimBackends, size, func(c *ChangeSet, s []BackendKey) { c.TrimBackends = s })
	return out
}

func appendBatches[T any](out []Batch, s []T, size int, set func(*ChangeSet, []T)) []Batch {
	for off := 0; off < len(s); off += size {
		chunk := s[off:min(off+size, len(s))]
		out = append(out, Batch{n: len(chunk), slice: func(lo, hi int) ChangeSet {
			var cs ChangeSet
			set(&cs, chunk[lo:hi])
			return cs
		}})
	}
	return out
}
