package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cilium/ebpf"
)

// table is one agent-written map as Apply drives it. Each method is one
// map syscall (for Memory: its model, with the kernel's semantics).
type table[K comparable, V any] interface {
	// batchUpdate upserts entries in order and stops at the first failure,
	// returning how many it applied (BPF_MAP_UPDATE_BATCH).
	batchUpdate(entries []Entry[K, V]) (int, error)
	// batchDelete deletes keys in order and stops at the first failure,
	// returning how many it deleted; a missing key fails with
	// ebpf.ErrKeyNotExist (BPF_MAP_DELETE_BATCH).
	batchDelete(keys []K) (int, error)
	update(e Entry[K, V]) error
	// remove fails with ebpf.ErrKeyNotExist for a missing key.
	remove(k K) error
}

// Write describes one map write syscall, for tests and debugging.
type Write struct {
	Map     string
	Delete  bool
	Batch   bool // a batch syscall (else a single-entry one)
	Applied int  // entries written (or found missing and skipped: see Skipped)
	Skipped bool // the syscall stopped at a key that was already missing
	// Entries is the syscall's input: []Frontend, []Slot or []Backend for
	// upserts, []FrontendKey, []SlotKey or []BackendKey for deletes. It is
	// valid only during the callback.
	Entries any
	Err     error
}

// writer carries Apply's chunking and accounting, shared by BPF and
// Memory so both count exactly the same syscalls for the same work.
type writer struct {
	batchSize int
	batching  bool // false: one syscall per entry (no batch ops, or disabled)
	trace     func(Write)
	log       *slog.Logger
}

// mapCounters are the counters of one map that Apply updates.
type mapCounters struct {
	Updates, Deletes, Syscalls, Batches, ReadSyscalls uint64
}

func (w *writer) note(c *mapCounters, as *ApplyStats, batch bool, updates, deletes int) {
	c.Syscalls++
	as.Syscalls++
	if batch {
		c.Batches++
		as.Batches++
	}
	c.Updates += uint64(updates)
	c.Deletes += uint64(deletes)
	as.Updates += updates
	as.Deletes += deletes
}

func (w *writer) traceWrite(ev Write) {
	if w.trace != nil {
		w.trace(ev)
	}
}

// upsert writes entries to t in chunks of batchSize. After a partial batch
// it resumes from the first entry the kernel did not apply (the returned
// count); it gives up when a syscall makes no progress.
func upsert[K comparable, V any](ctx context.Context, w *writer, name string, t table[K, V], entries []Entry[K, V], c *mapCounters, as *ApplyStats) error {
	for len(entries) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !w.batching {
			err := t.update(entries[0])
			applied := 0
			if err == nil {
				applied = 1
			}
			w.note(c, as, false, applied, 0)
			w.traceWrite(Write{Map: name, Applied: applied, Entries: entries[:1], Err: err})
			if err != nil {
				return fmt.Errorf("update %s %v: %w", name, entries[0].Key, err)
			}
			entries = entries[1:]
			continue
		}
		chunk := entries[:min(len(entries), w.batchSize)]
		n, err := t.batchUpdate(chunk)
		if err != nil && n == 0 && errors.Is(err, ebpf.ErrNotSupported) {
			w.log.Warn("kernel lacks batch map operations, writing one entry per syscall", "map", name, "error", err)
			w.batching = false
			continue
		}
		w.note(c, as, true, n, 0)
		w.traceWrite(Write{Map: name, Batch: true, Applied: n, Entries: chunk, Err: err})
		entries = entries[n:]
		if err != nil {
			if n > 0 {
				continue
			}
			return fmt.Errorf("batch update %s (%d entries): %w", name, len(chunk), err)
		}
	}
	return nil
}

// remove deletes keys from t in chunks of batchSize. A key that is
// already missing is skipped (deletes are idempotent): the batch resumes
// after it.
func remove[K comparable, V any](ctx context.Context, w *writer, name string, t table[K, V], keys []K, c *mapCounters, as *ApplyStats) error {
	for len(keys) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !w.batching {
			err := t.remove(keys[0])
			missing := errors.Is(err, ebpf.ErrKeyNotExist)
			applied := 0
			if err == nil {
				applied = 1
			}
			w.note(c, as, false, 0, applied)
			w.traceWrite(Write{Map: name, Delete: true, Applied: applied, Skipped: missing, Entries: keys[:1], Err: err})
			if err != nil && !missing {
				return fmt.Errorf("delete %s %v: %w", name, keys[0], err)
			}
			keys = keys[1:]
			continue
		}
		chunk := keys[:min(len(keys), w.batchSize)]
		n, err := t.batchDelete(chunk)
		if err != nil && n == 0 && errors.Is(err, ebpf.ErrNotSupported) {
			w.log.Warn("kernel lacks batch map operations, writing one entry per syscall", "map", name, "error", err)
			w.batching = false
			continue
		}
		missing := errors.Is(err, ebpf.ErrKeyNotExist)
		w.note(c, as, true, 0, n)
		w.traceWrite(Write{Map: name, Delete: true, Batch: true, Applied: n, Skipped: missing, Entries: chunk, Err: err})
		switch {
		case err == nil:
			keys = keys[len(chunk):]
		case missing:
			keys = keys[n+1:]
		case n > 0:
			keys = keys[n:]
		default:
			return fmt.Errorf("batch delete %s (%d keys): %w", name, len(chunk), err)
		}
	}
	return nil
}

// tables are the three agent-written maps of one implementation and their
// counters (indexed like agentMaps).
type tables struct {
	frontends table[FrontendKey, FrontendValue]
	slots     table[SlotKey, SlotValue]
	backends  table[BackendKey, BackendValue]
	counters  *[3]mapCounters
}

// agentMaps are the names of the agent-written maps in counter order.
var agentMaps = [3]string{MapFrontends, MapSlots, MapBackends}

const (
	idxFrontends = iota
	idxSlots
	idxBackends
)

// apply writes cs in ChangeSet's order.
func (w *writer) apply(ctx context.Context, t tables, cs ChangeSet) (ApplyStats, error) {
	var as ApplyStats
	c := t.counters
	steps := []func() error{
		func() error {
			return remove(ctx, w, MapFrontends, t.frontends, cs.DeleteFrontends, &c[idxFrontends], &as)
		},
		func() error { return remove(ctx, w, MapSlots, t.slots, cs.DeleteSlots, &c[idxSlots], &as) },
		func() error { return remove(ctx, w, MapBackends, t.backends, cs.DeleteBackends, &c[idxBackends], &as) },
		func() error { return upsert(ctx, w, MapBackends, t.backends, cs.UpsertBackends, &c[idxBackends], &as) },
		func() error { return upsert(ctx, w, MapSlots, t.slots, cs.UpsertSlots, &c[idxSlots], &as) },
		func() error {
			return upsert(ctx, w, MapFrontends, t.frontends, cs.UpsertFrontends, &c[idxFrontends], &as)
		},
		func() error { return remove(ctx, w, MapSlots, t.slots, cs.TrimSlots, &c[idxSlots], &as) },
		func() error { return remove(ctx, w, MapBackends, t.backends, cs.TrimBackends, &c[idxBackends], &as) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return as, err
		}
	}
	return as, nil
}

// upsertCounts returns the number of upserts of cs per map, indexed like
// agentMaps.
func upsertCounts(cs ChangeSet) [3]int {
	return [3]int{len(cs.UpsertFrontends), len(cs.UpsertSlots), len(cs.UpsertBackends)}
}
