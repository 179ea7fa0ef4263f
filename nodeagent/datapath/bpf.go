package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// DefaultPinPath is where BPF pins its maps and links by default.
const DefaultPinPath = "/sys/fs/bpf/meshrelay"

// BPFOptions configure OpenBPF.
type BPFOptions struct {
	// PinPath is the bpffs directory for maps (in v<layout hash>/) and
	// program links (in links/); default DefaultPinPath. The bpf
	// filesystem is mounted at /sys/fs/bpf if the path is below it and
	// nothing is mounted there.
	PinPath string
	// MaxEntries sizes the maps; see MaxEntries for the defaults. A change
	// is a layout change (new maps, see layout.go).
	MaxEntries MaxEntries
	// BatchSize is the number of entries per batch syscall; default
	// DefaultBatchSize.
	BatchSize int
	// NoBatch writes one entry per syscall (Map.Update/Delete). Without
	// it, BPF falls back to that by itself on kernels without batch ops.
	NoBatch bool
	// Trace, if set, is called after every map write syscall.
	Trace func(Write)
	// ReadOnly opens the pinned maps of this layout read-only, for Dump and
	// Stats, and fails when they are not pinned: nothing is created or
	// mounted. Apply and Attach fail.
	ReadOnly bool
	// Programs configure the socket programs that Attach installs.
	Programs ProgramsOptions
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// BPF is the Datapath in pinned kernel maps, written with batched
// syscalls. Its maps are BPF_MAP_TYPE_HASH with BPF_F_NO_PREALLOC (memory
// grows with the entries held), shared by name with the programs that
// Programs loads.
type BPF struct {
	log      *slog.Logger
	pinPath  string
	dir      string // pinPath/v<hash>
	spec     *ebpf.CollectionSpec
	maps     map[string]*ebpf.Map // every pinned map of spec
	stale    []string
	mu       sync.Mutex // serialises Apply, Dump, counters
	w        writer
	fe       *bpfTable[FrontendKey, FrontendValue]
	sl       *bpfTable[SlotKey, SlotValue]
	be       *bpfTable[BackendKey, BackendValue]
	rs       [3]*resizable // indexed like agentMaps
	rn       *revNATMap    // rev_nat (lru.go)
	us       *usageMap     // usage (lru.go)
	counters [3]mapCounters
	closed   bool
	attached attachment
}

var _ Datapath = (*BPF)(nil)

// OpenBPF opens the pinned maps of this layout under opts.PinPath,
// creating and pinning the ones that do not exist. Existing pins keep
// their entries. Directories of other layouts are left alone (see
// StaleLayouts).
func OpenBPF(opts BPFOptions) (*BPF, error) {
	if opts.PinPath == "" {
		opts.PinPath = DefaultPinPath
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	spec, err := datapathSpec(opts.MaxEntries.withDefaults())
	if err != nil {
		return nil, err
	}
	b := &BPF{
		log:      opts.Logger,
		pinPath:  opts.PinPath,
		dir:      filepath.Join(opts.PinPath, "v"+layoutHash(spec)),
		spec:     spec,
		maps:     make(map[string]*ebpf.Map),
		w:        writer{batchSize: opts.BatchSize, batching: !opts.NoBatch, trace: opts.Trace, log: opts.Logger},
		attached: attachment{opts: opts.Programs, readOnly: opts.ReadOnly},
	}
	if opts.ReadOnly {
		if err := b.loadPinned(opts); err != nil {
			return nil, err
		}
		return b, nil
	}
	if err := ensureBPFFS(b.dir); err != nil {
		return nil, err
	}
	for _, name := range pinnedMaps(spec) {
		ms := spec.Maps[name]
		if ms.InnerMap != nil {
			// The template the kernel checks inner maps against: its
			// size does not matter for hash maps, so keep it small.
			ms = ms.Copy()
			ms.InnerMap.MaxEntries = minMapEntries
		}
		m, err := ebpf.NewMapWithOptions(ms, ebpf.MapOptions{PinPath: b.dir})
		if err != nil {
			b.closeMaps()
			return nil, fmt.Errorf("open map %s in %s: %w", name, b.dir, err)
		}
		b.maps[name] = m
	}
	if err := b.openTables(opts, false); err != nil {
		return nil, err
	}

	entries, err := os.ReadDir(opts.PinPath)
	if err != nil {
		b.closeMaps()
		return nil, fmt.Errorf("list %s: %w", opts.PinPath, err)
	}
	for _, e := range entries {
		if p := filepath.Join(opts.PinPath, e.Name()); e.IsDir() && strings.HasPrefix(e.Name(), "v") && p != b.dir {
			b.stale = append(b.stale, p)
		}
	}
	if len(b.stale) > 0 {
		b.log.Warn("maps of another layout are pinned; they serve traffic until the programs are switched",
			"layout", b.dir, "stale", b.stale)
	}
	return b, nil
}

// openTables opens the live inner map of every agent-written map (slot 0
// of its outer map) and wraps it. Unless readOnly, an empty slot gets a new
// empty map and the pin <layout>/<name> is made to name the live map.
func (b *BPF) openTables(opts BPFOptions, readOnly bool) error {
	sizes := opts.MaxEntries.withDefaults()
	var inner [3]*ebpf.Map
	for i, name := range agentMaps {
		outer := outerName(name)
		b.rs[i] = &resizable{
			name: name, outer: b.maps[outer], inner: b.spec.Maps[outer].InnerMap,
			pin: pinOf(b.dir, name), sizing: newSizing(sizes.byName(name)),
		}
		var err error
		if readOnly {
			inner[i], err = b.rs[i].lookupInner()
		} else {
			inner[i], err = b.rs[i].openInner()
		}
		if err != nil {
			for _, m := range inner[:i] {
				m.Close()
			}
			b.closeMaps()
			return fmt.Errorf("open map %s in %s: %w", name, b.dir, err)
		}
	}
	lru := func(name string, floor int) resizable {
		return resizable{
			name: name, outer: b.maps[outerName(name)], inner: b.spec.Maps[outerName(name)].InnerMap,
			pin: pinOf(b.dir, name), sizing: sizing{size: min(floor, sizes.byName(name)), limit: sizes.byName(name)},
		}
	}
	var err error
	b.rn, err = openLRU[meshrelayRevnatKey](lru(mapRevNAT, minRevNATEntries), minRevNATEntries,
		func(v meshrelayRevnatValue) uint64 { return v.UsedNs }, opts.BatchSize, readOnly)
	if err == nil {
		b.us, err = openLRU[meshrelayUsageKey](lru(mapUsage, minUsageEntries), minUsageEntries,
			func(v meshrelayUsageValue) uint64 { return v.LastUsedNs }, opts.BatchSize, readOnly)
	}
	if err != nil {
		for _, m := range inner {
			m.Close()
		}
		b.closeMaps()
		return fmt.Errorf("open maps in %s: %w", b.dir, err)
	}
	b.fe = newBPFTable[FrontendKey, FrontendValue](inner[idxFrontends], opts.BatchSize)
	b.sl = newBPFTable[SlotKey, SlotValue](inner[idxSlots], opts.BatchSize)
	b.be = newBPFTable[BackendKey, BackendValue](inner[idxBackends], opts.BatchSize)
	b.rs[idxFrontends].entries = b.fe.count()
	b.rs[idxSlots].entries = b.sl.count()
	b.rs[idxBackends].entries = b.be.count()
	return nil
}

// PinDir returns the directory of this layout's maps.
func (b *BPF) PinDir() string { return b.dir }

// StaleLayouts returns the map directories of other layouts found by OpenBPF.
func (b *BPF) StaleLayouts() []string { return append([]string(nil), b.stale...) }

// RemoveStaleLayouts unpins the maps of other layouts. Call it after the
// programs use this layout's maps (Programs.Install).
func (b *BPF) RemoveStaleLayouts() error {
	var errs []error
	for _, dir := range b.stale {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove stale layout: %w", err))
		}
	}
	b.stale = nil
	return errors.Join(errs...)
}

// Apply implements Datapath.
func (b *BPF) Apply(ctx context.Context, cs ChangeSet) (ApplyStats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ApplyStats{}, errClosed
	}
	if b.attached.readOnly {
		return ApplyStats{}, errReadOnly
	}
	ops := b.resizeOps()
	if err := growMaps(ctx, ops, upsertCounts(cs)); err != nil {
		return ApplyStats{}, err
	}
	before := b.counters
	as, err := b.w.apply(ctx, tables{frontends: b.fe, slots: b.sl, backends: b.be, counters: &b.counters}, cs)
	settle(ops, &before, &b.counters)
	if err == nil {
		if err := shrinkMaps(ctx, ops); err != nil {
			b.log.Warn("shrinking a map failed; it keeps its size", "error", err)
		}
		now := time.Now()
		if err := errors.Join(b.rn.maybeCheck(ctx, now), b.us.maybeCheck(ctx, now)); err != nil {
			b.log.Warn("resizing a kernel-written map failed; it keeps its size", "error", err)
		}
	}
	return as, err
}

// resizeOps are the resize policy's handles on the maps, indexed like
// agentMaps.
func (b *BPF) resizeOps() [3]resizeOp {
	return [3]resizeOp{
		{&b.rs[idxFrontends].sizing, MapFrontends, b.fe.count, func(ctx context.Context, n int) error { return resizeTable(ctx, b.rs[idxFrontends], b.fe, n) }},
		{&b.rs[idxSlots].sizing, MapSlots, b.sl.count, func(ctx context.Context, n int) error { return resizeTable(ctx, b.rs[idxSlots], b.sl, n) }},
		{&b.rs[idxBackends].sizing, MapBackends, b.be.count, func(ctx context.Context, n int) error { return resizeTable(ctx, b.rs[idxBackends], b.be, n) }},
	}
}

// Dump implements Datapath.
func (b *BPF) Dump(ctx context.Context) (State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return State{}, errClosed
	}
	var s State
	var err error
	if s.Frontends, err = b.fe.dump(ctx, &b.counters[idxFrontends].ReadSyscalls); err != nil {
		return State{}, fmt.Errorf("dump %s: %w", MapFrontends, err)
	}
	if s.Slots, err = b.sl.dump(ctx, &b.counters[idxSlots].ReadSyscalls); err != nil {
		return State{}, fmt.Errorf("dump %s: %w", MapSlots, err)
	}
	if s.Backends, err = b.be.dump(ctx, &b.counters[idxBackends].ReadSyscalls); err != nil {
		return State{}, fmt.Errorf("dump %s: %w", MapBackends, err)
	}
	return s, nil
}

// Stats implements Datapath. It reports every pinned map (the kernel-written
// ones have no write counters); Entries are counted by iterating the map
// (batch lookups, not counted in ReadSyscalls), MemlockBytes comes from the
// kernel.
func (b *BPF) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	var st Stats
	if b.closed {
		return st
	}
	for _, name := range pinnedMaps(b.spec) {
		m := b.maps[name]
		if inner, ok := strings.CutSuffix(name, "_outer"); ok {
			name = inner
			switch name {
			case MapFrontends:
				m = b.fe.m
			case MapSlots:
				m = b.sl.m
			case MapBackends:
				m = b.be.m
			case mapRevNAT:
				m = b.rn.m
			case mapUsage:
				m = b.us.m
			}
		}
		ms := MapStats{Name: name, Entries: -1, MaxEntries: int(m.MaxEntries()), Limit: int(m.MaxEntries()), Flags: m.Flags()}
		if info, err := m.Info(); err == nil {
			ms.MemlockBytes, _ = info.Memlock()
		}
		switch name {
		case MapFrontends:
			ms.Entries = b.fe.count()
		case MapSlots:
			ms.Entries = b.sl.count()
		case MapBackends:
			ms.Entries = b.be.count()
		case mapRevNAT:
			b.rn.stats(&ms)
		case mapUsage:
			b.us.stats(&ms)
		}
		for i, n := range agentMaps {
			if n == name {
				c := b.counters[i]
				ms.Updates, ms.Deletes, ms.Syscalls, ms.Batches, ms.ReadSyscalls = c.Updates, c.Deletes, c.Syscalls, c.Batches, c.ReadSyscalls
				ms.Limit, ms.Resizes, ms.CopySyscalls = b.rs[i].limit, b.rs[i].resizes, b.rs[i].copySyscalls
			}
		}
		st.Maps = append(st.Maps, ms)
	}
	return st
}

// SetServiceCIDRs makes prefixes the ranges in which a miss (a connect to
// an address that is no frontend) is reported by the programs. It writes
// only the difference to what the map holds.
func (b *BPF) SetServiceCIDRs(prefixes []netip.Prefix) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	m := b.maps["service_cidrs"]
	want := make(map[meshrelayCidrKey]bool, len(prefixes))
	for _, p := range prefixes {
		want[cidrKey(p)] = true
	}
	var k meshrelayCidrKey
	var stale []meshrelayCidrKey
	it := m.Iterate()
	var v uint8
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
		delete(want, k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read service_cidrs: %w", err)
	}
	for _, k := range stale {
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete service CIDR: %w", err)
		}
	}
	for k := range want {
		if err := m.Update(&k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add service CIDR %s: %w", netip.PrefixFrom(netip.AddrFrom16(k.Addr), int(k.Prefixlen)), err)
		}
	}
	return nil
}

// cidrKey returns the LPM key of p (IPv4 v4-mapped, prefix length + 96).
func cidrKey(p netip.Prefix) meshrelayCidrKey {
	p = p.Masked()
	bitsLen := p.Bits()
	if p.Addr().Is4() {
		bitsLen += 96
	}
	return meshrelayCidrKey{Prefixlen: uint32(bitsLen), Addr: p.Addr().As16()}
}

// Close implements Datapath: it closes the map file descriptors and keeps
// the pins.
func (b *BPF) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	return errors.Join(b.attached.close(), b.closeMaps())
}

func (b *BPF) closeMaps() error {
	var errs []error
	if b.fe != nil {
		errs = append(errs, b.fe.close(), b.sl.close(), b.be.close())
	}
	if b.rn != nil {
		errs = append(errs, b.rn.close())
	}
	if b.us != nil {
		errs = append(errs, b.us.close())
	}
	for _, m := range b.maps {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}

// bpfTable is one agent-written kernel map.
type bpfTable[K comparable, V any] struct {
	m    *ebpf.Map
	keys []K // scratch for batch syscalls
	vals []V
}

func newBPFTable[K comparable, V any](m *ebpf.Map, batchSize int) *bpfTable[K, V] {
	return &bpfTable[K, V]{m: m, keys: make([]K, 0, batchSize), vals: make([]V, 0, batchSize)}
}

func (t *bpfTable[K, V]) batchUpdate(entries []Entry[K, V]) (int, error) {
	t.keys, t.vals = t.keys[:0], t.vals[:0]
	for _, e := range entries {
		t.keys = append(t.keys, e.Key)
		t.vals = append(t.vals, e.Value)
	}
	n, err := t.m.BatchUpdate(t.keys, t.vals, nil)
	return n, mapFull(err)
}

func (t *bpfTable[K, V]) batchDelete(keys []K) (int, error) {
	return t.m.BatchDelete(keys, nil)
}

func (t *bpfTable[K, V]) update(e Entry[K, V]) error {
	return mapFull(t.m.Update(&e.Key, &e.Value, ebpf.UpdateAny))
}

func (t *bpfTable[K, V]) remove(k K) error { return t.m.Delete(&k) }

func (t *bpfTable[K, V]) close() error { return t.m.Close() }

// dump reads the map, adding the syscalls it made to *syscalls.
func (t *bpfTable[K, V]) dump(ctx context.Context, syscalls *uint64) (map[K]V, error) {
	out := make(map[K]V)
	err := t.walk(ctx, syscalls, func(k K, v V) { out[k] = v })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// count returns the number of entries, or -1 if the map cannot be read.
func (t *bpfTable[K, V]) count() int {
	var syscalls uint64
	n := 0
	if err := t.walk(context.Background(), &syscalls, func(K, V) { n++ }); err != nil {
		return -1
	}
	return n
}

// walk calls fn for every entry, reading with batch lookups (or, without
// them, by iterating) and adding the syscalls it made to *syscalls.
func (t *bpfTable[K, V]) walk(ctx context.Context, syscalls *uint64, fn func(K, V)) error {
	keys := make([]K, cap(t.keys))
	vals := make([]V, cap(t.keys))
	var cursor ebpf.MapBatchCursor
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := t.m.BatchLookup(&cursor, keys, vals, nil)
		if n == 0 && errors.Is(err, ebpf.ErrNotSupported) {
			return t.iterate(syscalls, fn)
		}
		*syscalls++
		for i := range n {
			fn(keys[i], vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (t *bpfTable[K, V]) iterate(syscalls *uint64, fn func(K, V)) error {
	var k K
	var v V
	it := t.m.Iterate()
	for it.Next(&k, &v) {
		fn(k, v)
		*syscalls += 2 // next key + lookup
	}
	*syscalls++
	return it.Err()
}

func mapFull(err error) error {
	if errors.Is(err, unix.E2BIG) {
		return fmt.Errorf("%w: %w", ErrMapFull, err)
	}
	return err
}
