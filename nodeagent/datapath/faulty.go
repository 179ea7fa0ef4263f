package datapath

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrInjected is the error Faulty returns for the batch it fails.
var ErrInjected = errors.New("injected datapath fault")

// FaultOptions configure NewFaulty.
type FaultOptions struct {
	// BatchSize is the batch size of the wrapped datapath; default
	// DefaultBatchSize. Faulty cuts change sets into the same batches.
	BatchSize int
	// FailNthBatch fails the n-th batch (1-based, counted across Apply
	// calls) once; 0 never fails.
	FailNthBatch int
	// PartialBatch is how many entries of the failing batch are applied
	// before the error, as a kernel batch that stops at a bad entry would.
	PartialBatch int
}

// Faulty wraps a Datapath to inject a failed or partial batch, for tests.
// Its Apply cuts the change set into the batches the wrapped datapath
// would write, in the same order, and applies them one at a time, so
// batch n of Faulty is batch n of the wrapped datapath.
type Faulty struct {
	dp   Datapath
	opts FaultOptions

	mu      sync.Mutex
	batches int
}

var _ Datapath = (*Faulty)(nil)

// NewFaulty wraps dp.
func NewFaulty(dp Datapath, opts FaultOptions) *Faulty {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	return &Faulty{dp: dp, opts: opts}
}

// Apply implements Datapath.
func (f *Faulty) Apply(ctx context.Context, cs ChangeSet) (ApplyStats, error) {
	var total ApplyStats
	for _, b := range splitBatches(cs, f.opts.BatchSize) {
		f.mu.Lock()
		f.batches++
		n := f.batches
		f.mu.Unlock()
		if n == f.opts.FailNthBatch {
			if k := min(f.opts.PartialBatch, b.n); k > 0 {
				st, err := f.dp.Apply(ctx, b.slice(0, k))
				total = total.Add(st)
				if err != nil {
					return total, err
				}
			}
			return total, fmt.Errorf("batch %d: %w", n, ErrInjected)
		}
		st, err := f.dp.Apply(ctx, b.slice(0, b.n))
		total = total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Dump implements Datapath.
func (f *Faulty) Dump(ctx context.Context) (State, error) { return f.dp.Dump(ctx) }

// Stats implements Datapath.
func (f *Faulty) Stats() Stats { return f.dp.Stats() }

// Close implements Datapath.
func (f *Faulty) Close() error { return f.dp.Close() }

// batch is one batch of a change set: n entries of a single field.
type batch struct {
	n     int
	slice func(lo, hi int) ChangeSet
}

// splitBatches cuts cs into batches of at most size entries in Apply's order.
func splitBatches(cs ChangeSet, size int) []batch {
	var out []batch
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

func appendBatches[T any](out []batch, s []T, size int, set func(*ChangeSet, []T)) []batch {
	for off := 0; off < len(s); off += size {
		chunk := s[off:min(off+size, len(s))]
		out = append(out, batch{n: len(chunk), slice: func(lo, hi int) ChangeSet {
			var cs ChangeSet
			set(&cs, chunk[lo:hi])
			return cs
		}})
	}
	return out
}
