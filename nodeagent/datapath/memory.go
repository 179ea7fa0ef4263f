package datapath

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/bits"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
)

// MemoryOptions configure NewMemory.
type MemoryOptions struct {
	// MaxEntries sizes the maps (only Frontends, Slots and Backends apply).
	MaxEntries MaxEntries
	// BatchSize is the number of entries per modelled batch syscall;
	// default DefaultBatchSize.
	BatchSize int
	// NoBatch models a kernel without batch map operations: one syscall
	// per entry.
	NoBatch bool
	// Trace, if set, is called after every modelled write syscall.
	Trace func(Write)
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Memory is a Datapath in Go maps. It has the kernel maps' semantics
// (capacity, batches that stop at the first failure) and counts ops and
// syscalls exactly as BPF does for the same change sets and options. It is
// used when eBPF is unavailable and by the scale harness, which runs
// thousands of them: an empty Memory is a few hundred bytes.
type Memory struct {
	mu       sync.Mutex
	w        writer
	fe       memTable[FrontendKey, FrontendValue]
	sl       memTable[SlotKey, SlotValue]
	be       memTable[BackendKey, BackendValue]
	counters [3]mapCounters
	sizes    [3]sizing // the sizes BPF's maps would have (resize.go)
	closed   bool
}

var _ Datapath = (*Memory)(nil)

// NewMemory returns an empty in-memory datapath.
func NewMemory(opts MemoryOptions) *Memory {
	sizes := opts.MaxEntries.withDefaults()
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Memory{
		w:     writer{batchSize: opts.BatchSize, batching: !opts.NoBatch, trace: opts.Trace, log: opts.Logger},
		fe:    memTable[FrontendKey, FrontendValue]{max: sizes.Frontends},
		sl:    memTable[SlotKey, SlotValue]{max: sizes.Slots},
		be:    memTable[BackendKey, BackendValue]{max: sizes.Backends},
		sizes: [3]sizing{newSizing(sizes.Frontends), newSizing(sizes.Slots), newSizing(sizes.Backends)},
	}
}

// resizeOps model BPF's resizes: the entries stay, only the modelled
// capacity changes.
func (m *Memory) resizeOps() [3]resizeOp {
	nop := func(context.Context, int) error { return nil }
	return [3]resizeOp{
		{&m.sizes[idxFrontends], MapFrontends, func() int { return len(m.fe.m) }, nop},
		{&m.sizes[idxSlots], MapSlots, func() int { return len(m.sl.m) }, nop},
		{&m.sizes[idxBackends], MapBackends, func() int { return len(m.be.m) }, nop},
	}
}

// Apply implements Datapath.
func (m *Memory) Apply(ctx context.Context, cs ChangeSet) (ApplyStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ApplyStats{}, errClosed
	}
	ops := m.resizeOps()
	if err := growMaps(ctx, ops, upsertCounts(cs)); err != nil {
		return ApplyStats{}, err
	}
	before := m.counters
	as, err := m.w.apply(ctx, tables{frontends: &m.fe, slots: &m.sl, backends: &m.be, counters: &m.counters}, cs)
	settle(ops, &before, &m.counters)
	if err == nil {
		_ = shrinkMaps(ctx, ops) // modelled resizes cannot fail
	}
	return as, err
}

// Dump implements Datapath.
func (m *Memory) Dump(ctx context.Context) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return State{}, errClosed
	}
	s := NewState()
	maps.Copy(s.Frontends, m.fe.m)
	maps.Copy(s.Slots, m.sl.m)
	maps.Copy(s.Backends, m.be.m)
	for i, n := range [3]int{len(m.fe.m), len(m.sl.m), len(m.be.m)} {
		m.counters[i].ReadSyscalls += uint64(n/m.w.batchSize + 1)
	}
	return s, nil
}

// Stats implements Datapath. MemlockBytes models the kernel's figure for
// a BPF_F_NO_PREALLOC hash map (see modelMemlock).
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Stats{Maps: make([]MapStats, 0, 3)}
	for i, t := range [3]struct{ n, k, v int }{
		{len(m.fe.m), int(unsafe.Sizeof(FrontendKey{})), int(unsafe.Sizeof(FrontendValue{}))},
		{len(m.sl.m), int(unsafe.Sizeof(SlotKey{})), int(unsafe.Sizeof(SlotValue{}))},
		{len(m.be.m), int(unsafe.Sizeof(BackendKey{})), int(unsafe.Sizeof(BackendValue{}))},
	} {
		c, sz := m.counters[i], m.sizes[i]
		st.Maps = append(st.Maps, MapStats{
			Name: agentMaps[i], Entries: t.n, MaxEntries: sz.size, Limit: sz.limit, Flags: flagNoPrealloc,
			Updates: c.Updates, Deletes: c.Deletes, Syscalls: c.Syscalls, Batches: c.Batches,
			ReadSyscalls: c.ReadSyscalls, MemlockBytes: modelMemlock(t.n, sz.size, t.k, t.v),
			Resizes: sz.resizes,
		})
	}
	return st
}

// Close implements Datapath; it drops the maps.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.fe.m, m.sl.m, m.be.m = nil, nil, nil
	return nil
}

// modelMemlock is the memlock Linux (>= 6.4, 64-bit) reports for a
// BPF_F_NO_PREALLOC hash map with n of max entries: a fixed header, a
// 16-byte bucket per roundup_pow2(max) and, per element, a 48-byte header
// plus key and value rounded up to 8 bytes plus an 8-byte allocator node.
func modelMemlock(n, maxEntries, keySize, valueSize int) uint64 {
	const header, bucket, elemHeader, allocNode = 896, 16, 48, 8
	buckets := uint64(1) << bits.Len64(uint64(maxEntries-1))
	elem := uint64(elemHeader + roundUp8(keySize) + roundUp8(valueSize) + allocNode)
	return header + bucket*buckets + elem*uint64(n)
}

func roundUp8(n int) int { return (n + 7) &^ 7 }

// flagNoPrealloc is BPF_F_NO_PREALLOC.
const flagNoPrealloc = 1

// memTable is one map in a Go map with a kernel hash map's semantics.
type memTable[K comparable, V any] struct {
	m   map[K]V
	max int
}

func (t *memTable[K, V]) put(e Entry[K, V]) error {
	if _, ok := t.m[e.Key]; !ok && len(t.m) >= t.max {
		return fmt.Errorf("%w (%d entries)", ErrMapFull, t.max)
	}
	if t.m == nil {
		t.m = make(map[K]V)
	}
	t.m[e.Key] = e.Value
	return nil
}

func (t *memTable[K, V]) batchUpdate(entries []Entry[K, V]) (int, error) {
	for i, e := range entries {
		if err := t.put(e); err != nil {
			return i, err
		}
	}
	return len(entries), nil
}

func (t *memTable[K, V]) batchDelete(keys []K) (int, error) {
	for i, k := range keys {
		if err := t.remove(k); err != nil {
			return i, err
		}
	}
	return len(keys), nil
}

func (t *memTable[K, V]) update(e Entry[K, V]) error { return t.put(e) }

func (t *memTable[K, V]) remove(k K) error {
	if _, ok := t.m[k]; !ok {
		return fmt.Errorf("delete: %w", ebpf.ErrKeyNotExist)
	}
	delete(t.m, k)
	return nil
}
