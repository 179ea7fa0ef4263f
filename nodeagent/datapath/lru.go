package datapath

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The resizable kernel-written maps: rev_nat and usage.
//
// rev_nat is written by the programs (one entry per translated socket and
// backend), an LRU hash map the kernel preallocates: its memory is its
// max_entries whatever it holds, and when it is full the kernel evicts the
// least recently used entry, so an open connection whose entry was evicted
// sees its backend's address in getpeername and recvmsg. The agent sizes it
// by what it holds, like the agent-written maps (resize.go), but a copy
// cannot be atomic while the programs write, so it has two slots in
// rev_nat_outer: 0 is the map the programs write and read, 1 the map being
// replaced, which they still read (bpf/meshrelay.c). A resize
//
//  1. creates the new map (not pinned);
//  2. puts the current map in slot 1, then the new one in slot 0: from here
//     new entries go to the new map, old ones are still found in the old;
//  3. copies the old entries into the new map without overwriting any
//     (BPF_NOEXIST, batched): a newer entry of the same socket wins;
//  4. pins the new map at <layout>/rev_nat.
//
// The next check copies again (catching entries a program run that began
// before step 2 wrote to the old map) and empties slot 1. A restart finds
// both slots through the outer map and finishes the same way.
//
// The programs never delete an entry (a closed socket's stays until
// evicted), so what the map holds is not what it needs: the programs stamp
// every entry when written and, at most once a second, when used
// (revnat_value.used_ns), and the policy counts the entries used within
// lruRetention. Checks run from Apply, at most every lruCheckInterval: the
// map grows when those are more than half its size (the kernel's per-CPU
// free lists make it evict before it is full), to at least twice its size;
// it shrinks when they are under 1/8 of it for shrinkAfter checks in a row,
// never below its floor (minRevNATEntries). A copy into a map smaller than the old
// entries keeps the most recently used (the kernel would evict the others).
//
// The limit: an open connection that neither receives (recvmsg) nor asks
// getpeername for longer than it takes the node to open the map's size in
// new translated sockets loses its entry to the LRU, and from then on sees
// its backend's address. Growth keeps that time at least lruRetention.
//
// usage (frontend id -> last use) works the same way with its own floor:
// its values are the use stamps, and Programs.Usage reads both slots. Were
// it full, the kernel would evict the usage of frontends still in use and
// the agent could unload them as idle.
const (
	mapRevNAT = "rev_nat"
	mapUsage  = "usage"
	// minRevNATEntries and minUsageEntries are the initial and least
	// sizes: about 260 and 80 KiB of memlock (README Performance).
	minRevNATEntries = 2048
	minUsageEntries  = 1024
	lruCheckInterval = 10 * time.Second
	lruRetention     = 5 * time.Minute
)

// lruMap is the kernel side of a resizable kernel-written map: slot 0 (m)
// and, between a resize and the next check, slot 1 (prev).
type lruMap[K comparable, V any] struct {
	resizable
	m, prev   *ebpf.Map
	floor     int
	usedNs    func(V) uint64 // the stamp of an entry's last write or use
	batchSize int
	lastCheck time.Time
	retention time.Duration // lruRetention; tests shorten it
}

type (
	revNATMap = lruMap[meshrelayRevnatKey, meshrelayRevnatValue]
	usageMap  = lruMap[meshrelayUsageKey, meshrelayUsageValue]
)

// openLRU opens the maps in the slots of r.outer; unless readOnly it
// creates slot 0 at r.size if it is empty and pins it.
func openLRU[K comparable, V any](r resizable, floor int, usedNs func(V) uint64, batchSize int, readOnly bool) (*lruMap[K, V], error) {
	l := &lruMap[K, V]{resizable: r, floor: floor, usedNs: usedNs, batchSize: batchSize, retention: lruRetention}
	var err error
	if readOnly {
		l.m, err = l.lookupInner()
	} else {
		l.m, err = l.openInner()
	}
	if err != nil {
		return nil, err
	}
	var prev *ebpf.Map
	switch err := l.outer.Lookup(uint32(1), &prev); {
	case err == nil:
		l.prev = prev // a resize not finished before a restart
	case !errors.Is(err, ebpf.ErrKeyNotExist):
		l.m.Close()
		return nil, fmt.Errorf("read outer map of %s: %w", l.name, err)
	}
	return l, nil
}

func (l *lruMap[K, V]) close() error {
	err := l.m.Close()
	if l.prev != nil {
		err = errors.Join(err, l.prev.Close())
	}
	return err
}

// table returns m as a table of the map's entries, for reading and copying.
func (l *lruMap[K, V]) table(m *ebpf.Map) *bpfTable[K, V] {
	return newBPFTable[K, V](m, l.batchSize)
}

// stats fills the capacity and resize figures of ms, Entries counted.
func (l *lruMap[K, V]) stats(ms *MapStats) {
	ms.Entries = l.table(l.m).count()
	ms.Limit, ms.Resizes, ms.CopySyscalls = l.limit, l.resizes, l.copySyscalls
}

// maybeCheck runs check if lruCheckInterval has passed since the last one.
func (l *lruMap[K, V]) maybeCheck(ctx context.Context, now time.Time) error {
	if now.Sub(l.lastCheck) < lruCheckInterval {
		return nil
	}
	l.lastCheck = now
	return l.check(ctx)
}

// check finishes a pending resize, counts the entries and resizes the map
// if the policy says so.
func (l *lruMap[K, V]) check(ctx context.Context) error {
	if err := l.retire(ctx); err != nil {
		return err
	}
	n, err := l.recent(ctx)
	if err != nil {
		return err
	}
	if size := l.lruSize(n); size > 0 {
		return l.resize(ctx, size)
	}
	return nil
}

// recent counts the entries of slot 0 used within l.retention (and sets
// l.entries to all of them).
func (l *lruMap[K, V]) recent(ctx context.Context) (int, error) {
	now, err := monotonicNow()
	if err != nil {
		return 0, err
	}
	since := uint64(max(now-l.retention.Nanoseconds(), 0))
	all, n := 0, 0
	err = l.table(l.m).walk(ctx, &l.copySyscalls, func(_ K, v V) {
		all++
		if l.usedNs(v) >= since {
			n++
		}
	})
	if err != nil {
		return 0, fmt.Errorf("count %s entries: %w", l.name, err)
	}
	l.entries = all
	return n, nil
}

// monotonicNow reads CLOCK_MONOTONIC, the programs' bpf_ktime_get_ns, in ns.
func monotonicNow() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("read monotonic clock: %w", err)
	}
	return ts.Nano(), nil
}

// lruSize returns the size the map should take for n entries, or 0.
func (l *lruMap[K, V]) lruSize(n int) int {
	if 2*n > l.size && l.size < l.limit {
		l.low = 0
		return min(max(2*l.size, pow2AtLeast(2*n+1)), l.limit)
	}
	if l.size <= l.floor || n*shrinkBelowDen >= l.size {
		l.low = 0
		return 0
	}
	if l.low++; l.low < shrinkAfter {
		return 0
	}
	l.low = 0
	if size := max(pow2AtLeast(4*n), l.floor); size < l.size {
		return size
	}
	return 0
}

// resize replaces slot 0 by a map of size entries (steps 1-4 above).
func (l *lruMap[K, V]) resize(ctx context.Context, size int) error {
	if err := l.retire(ctx); err != nil {
		return err
	}
	nm, err := l.create(size)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		nm.Close()
		return fmt.Errorf("resize %s from %d to %d entries: %w", l.name, l.size, size, err)
	}
	if err := l.outer.Update(uint32(1), l.m, ebpf.UpdateAny); err != nil {
		return fail(fmt.Errorf("keep the old map readable: %w", err))
	}
	if err := l.outer.Update(uint32(0), nm, ebpf.UpdateAny); err != nil {
		l.outer.Delete(uint32(1))
		return fail(fmt.Errorf("switch outer map: %w", err))
	}
	// From here on the programs write nm and read nm, then the old map.
	l.prev, l.m = l.m, nm
	l.size = size
	l.resizes++
	if err := l.copyOld(ctx); err != nil {
		return fmt.Errorf("resize %s: %w", l.name, err)
	}
	return l.repin(nm)
}

// retire copies what slot 1 holds into slot 0 once more and empties slot 1.
func (l *lruMap[K, V]) retire(ctx context.Context) error {
	if l.prev == nil {
		return nil
	}
	if err := l.copyOld(ctx); err != nil {
		return fmt.Errorf("retire old %s: %w", l.name, err)
	}
	if err := l.outer.Delete(uint32(1)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("retire old %s: %w", l.name, err)
	}
	l.prev.Close()
	l.prev = nil
	return nil
}

// copyOld copies the entries of prev that m lacks into m, in batches; at
// most 3/4 of m's size, the most recently used first. Batch updates take
// no BPF_NOEXIST, so it reads m's keys first: an entry a program writes to
// m between that read and the copy (a socket sending again to the same
// backend) can be overwritten by its older copy, which differs at most in
// used_ns.
func (l *lruMap[K, V]) copyOld(ctx context.Context) error {
	have := make(map[K]bool)
	err := l.table(l.m).walk(ctx, &l.copySyscalls, func(k K, _ V) { have[k] = true })
	if err != nil {
		return err
	}
	var keys []K
	var vals []V
	err = l.table(l.prev).walk(ctx, &l.copySyscalls, func(k K, v V) {
		if !have[k] {
			keys, vals = append(keys, k), append(vals, v)
		}
	})
	if err != nil {
		return err
	}
	if room := max(l.size*3/4-len(have), 0); len(keys) > room {
		order := make([]int, len(keys))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(l.usedNs(vals[b]), l.usedNs(vals[a])) })
		k2, v2 := make([]K, room), make([]V, room)
		for i, j := range order[:room] {
			k2[i], v2[i] = keys[j], vals[j]
		}
		keys, vals = k2, v2
	}
	return copyEntries(l.m, keys, vals, l.batchSize, &l.copySyscalls)
}
