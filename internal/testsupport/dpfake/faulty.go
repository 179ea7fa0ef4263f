package dpfake

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// ErrInjected is the error Faulty returns for the batch it fails.
var ErrInjected = errors.New("injected datapath fault")

// FaultOptions configure NewFaulty.
type FaultOptions struct {
	// BatchSize is the batch size of the wrapped datapath; default
	// datapath.DefaultBatchSize. Faulty cuts change sets into the same
	// batches.
	BatchSize int
	// FailNthBatch fails the n-th batch (1-based, counted across Apply
	// calls) once; 0 never fails.
	FailNthBatch int
	// PartialBatch is how many entries of the failing batch are applied
	// before the error, as a kernel batch that stops at a bad entry would.
	PartialBatch int
}

// Validate reports options that cannot describe a fault.
func (o FaultOptions) Validate() error {
	if o.BatchSize < 0 || o.FailNthBatch < 0 || o.PartialBatch < 0 {
		return fmt.Errorf("fault options %+v: negative value", o)
	}
	return nil
}

// Faulty wraps a Datapath to inject a failed or partial batch. Its Apply
// cuts the change set into the batches the wrapped datapath would write
// (datapath.ChangeSet.Batches), in the same order, and applies them one
// at a time, so batch n of Faulty is batch n of the wrapped datapath.
type Faulty struct {
	dp   datapath.Datapath
	opts FaultOptions

	mu      sync.Mutex
	batches int
}

var _ datapath.Datapath = (*Faulty)(nil)

// NewFaulty wraps dp. It panics on options that fail Validate: they are a
// mistake in the test.
func NewFaulty(dp datapath.Datapath, opts FaultOptions) *Faulty {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = datapath.DefaultBatchSize
	}
	return &Faulty{dp: dp, opts: opts}
}

// Apply implements datapath.Datapath.
func (f *Faulty) Apply(ctx context.Context, cs datapath.ChangeSet) (datapath.ApplyStats, error) {
	var total datapath.ApplyStats
	for _, b := range cs.Batches(f.opts.BatchSize) {
		f.mu.Lock()
		f.batches++
		n := f.batches
		f.mu.Unlock()
		if n == f.opts.FailNthBatch {
			if k := min(f.opts.PartialBatch, b.Len()); k > 0 {
				st, err := f.dp.Apply(ctx, b.Slice(0, k))
				total = total.Add(st)
				if err != nil {
					return total, err
				}
			}
			return total, fmt.Errorf("batch %d: %w", n, ErrInjected)
		}
		st, err := f.dp.Apply(ctx, b.All())
		total = total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Dump implements datapath.Datapath.
func (f *Faulty) Dump(ctx context.Context) (datapath.State, error) { return f.dp.Dump(ctx) }

// Stats implements datapath.Datapath.
func (f *Faulty) Stats() datapath.Stats { return f.dp.Stats() }

// Attach implements datapath.Datapath by attaching the wrapped datapath.
func (f *Faulty) Attach(ctx context.Context, cidrs []netip.Prefix) (*datapath.Programs, error) {
	return f.dp.Attach(ctx, cidrs)
}

// Close implements datapath.Datapath.
func (f *Faulty) Close() error { return f.dp.Close() }
