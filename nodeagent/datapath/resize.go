package datapath

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// Resizing.
//
// The agent-written maps (frontends, slots, backends) are sized by what the
// node holds: each starts at minMapEntries and is replaced by a larger map
// before an Apply would fill it past growAbove, and by a smaller one once it
// has been mostly empty (below shrinkBelow) for shrinkAfter consecutive
// Applies. The sizes are powers of two (the kernel's bucket array is one
// anyway), never above the configured MaxEntries.
//
// In the kernel each map is the inner hash map in slot 0 of a one-entry
// BPF_MAP_TYPE_ARRAY_OF_MAPS (<name>_outer in bpf/meshrelay.c), which is
// what the programs look up. A resize
//
//  1. creates the new inner map (not pinned, so a crash drops it);
//  2. copies every entry with batch lookups and batch updates;
//  3. replaces slot 0 of the outer map in one update: a program run sees
//     the old map or the complete new one, never a half-copied one;
//  4. pins the new map at <layout>/<name> (replacing the old pin by
//     rename) for tools and a restarted agent.
//
// The outer map is the truth: OpenBPF takes the inner map from it and
// re-pins it if a crash fell between steps 3 and 4, so a restart mid-resize
// recovers with nothing to write. Apply holds the datapath's lock across a
// resize, so nothing writes the old map during the copy; the kernel-written
// maps keep their state (rev_nat is resized on its own, see lru.go; usage
// and miss_limit have fixed sizes).
const (
	minMapEntries = 64
	// A map grows when an Apply could fill it past 7/8, to the power of
	// two that holds the entries at most 4/5 full.
	growAboveNum, growAboveDen = 7, 8
	growToNum, growToDen       = 5, 4
	// It shrinks when under 1/8 full for shrinkAfter Applies in a row, to
	// the power of two that holds its entries at most half full.
	shrinkBelowDen = 8
	shrinkAfter    = 3
)

// sizing is the resize policy's state of one map, shared by BPF and Memory
// so both report the same MaxEntries and Resizes for the same Applies.
type sizing struct {
	size    int    // current max_entries
	limit   int    // configured MaxEntries: the size never exceeds it
	low     int    // consecutive Applies that found the map mostly empty
	resizes uint64 // completed resizes
	// entries is an upper bound of the map's entries: exact after a
	// count, then raised by every upsert and lowered by every delete.
	entries int
}

// resizeOp is what the policy needs of one map: count its entries exactly
// (-1 if it cannot) and replace it by one of size entries.
type resizeOp struct {
	s      *sizing
	name   string
	count  func() int
	resize func(ctx context.Context, size int) error
}

// growMaps enlarges every map that upserts[i] more entries could fill past
// the threshold. A map is counted exactly before it grows.
func growMaps(ctx context.Context, ops [3]resizeOp, upserts [3]int) error {
	for i, op := range ops {
		s := op.s
		if s.grown(s.entries+upserts[i]) == 0 {
			continue
		}
		if n := op.count(); n >= 0 {
			s.entries = n
		}
		if size := s.grown(s.entries + upserts[i]); size > 0 {
			if err := op.resize(ctx, size); err != nil {
				return err
			}
			s.size = size
			s.resizes++
		}
	}
	return nil
}

// settle updates the entry bounds after an Apply from the counters before
// and after it.
func settle(ops [3]resizeOp, before, after *[3]mapCounters) {
	for i, op := range ops {
		d := int(after[i].Updates-before[i].Updates) - int(after[i].Deletes-before[i].Deletes)
		op.s.entries = max(op.s.entries+d, 0)
	}
}

// shrinkMaps replaces maps that have been mostly empty for a while by
// smaller ones. A failure leaves the larger map in place; it is returned
// for logging.
func shrinkMaps(ctx context.Context, ops [3]resizeOp) error {
	var errs []error
	for _, op := range ops {
		s := op.s
		if s.entries*shrinkBelowDen < s.size {
			if n := op.count(); n >= 0 {
				s.entries = n
			}
		}
		if size := s.shrunk(s.entries); size > 0 {
			if err := op.resize(ctx, size); err != nil {
				errs = append(errs, err)
				continue
			}
			s.size = size
			s.resizes++
		}
	}
	return errors.Join(errs...)
}

func newSizing(limit int) sizing {
	return sizing{size: min(minMapEntries, limit), limit: limit}
}

// grown returns the size a map of the current size needs to take need
// entries, or 0 if it need not grow.
func (s *sizing) grown(need int) int {
	if need*growAboveDen <= s.size*growAboveNum || s.size >= s.limit {
		return 0
	}
	return min(pow2AtLeast(need*growToNum/growToDen+1), s.limit)
}

// shrunk records that the map holds n entries after an Apply and returns
// the smaller size it should take, or 0.
func (s *sizing) shrunk(n int) int {
	if s.size <= minMapEntries || n*shrinkBelowDen >= s.size {
		s.low = 0
		return 0
	}
	s.low++
	if s.low < shrinkAfter {
		return 0
	}
	s.low = 0
	size := max(pow2AtLeast(2*n), minMapEntries)
	if size >= s.size {
		return 0
	}
	return size
}

func pow2AtLeast(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// resizable is the kernel side of one resizable map: its outer map, the
// spec of its inner maps and its pin.
type resizable struct {
	name  string // MapFrontends, ...
	outer *ebpf.Map
	inner *ebpf.MapSpec // template; MaxEntries is set per map
	pin   string        // <layout>/<name>
	sizing
	copySyscalls uint64
}

// outerName returns the name of the outer map of resizable map name.
func outerName(name string) string { return name + "_outer" }

// openInner returns the map in slot 0 of r.outer, making sure it is the
// one pinned at r.pin; if the slot is empty it creates, installs and pins
// an empty map of r.size entries.
func (r *resizable) openInner() (*ebpf.Map, error) {
	var m *ebpf.Map
	err := r.outer.Lookup(uint32(0), &m)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		if m, err = r.create(r.size); err != nil {
			return nil, err
		}
		if err := r.outer.Update(uint32(0), m, ebpf.UpdateAny); err != nil {
			m.Close()
			return nil, fmt.Errorf("install map %s: %w", r.name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("read outer map of %s: %w", r.name, err)
	}
	if err := r.repin(m); err != nil {
		m.Close()
		return nil, err
	}
	r.size = int(m.MaxEntries())
	return m, nil
}

// lookupInner returns the map in slot 0 of r.outer without changing
// anything: the read-only open of `nodeagent dump`.
func (r *resizable) lookupInner() (*ebpf.Map, error) {
	var m *ebpf.Map
	if err := r.outer.Lookup(uint32(0), &m); err != nil {
		return nil, fmt.Errorf("read outer map of %s: %w", r.name, err)
	}
	r.size = int(m.MaxEntries())
	return m, nil
}

func (r *resizable) create(size int) (*ebpf.Map, error) {
	spec := r.inner.Copy()
	spec.Name = r.name
	spec.MaxEntries = uint32(size)
	spec.Pinning = ebpf.PinNone
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create map %s of %d entries: %w", r.name, size, err)
	}
	return m, nil
}

// repin makes r.pin name m, replacing a pin of another map by rename.
func (r *resizable) repin(m *ebpf.Map) error {
	if old, err := ebpf.LoadPinnedMap(r.pin, nil); err == nil {
		same := sameMap(old, m)
		old.Close()
		if same {
			return nil
		}
	}
	tmp := r.pin + "_new" // bpffs names cannot hold a dot
	os.Remove(tmp)
	if err := m.Pin(tmp); err != nil {
		return fmt.Errorf("pin map %s: %w", r.name, err)
	}
	if err := os.Rename(tmp, r.pin); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pin map %s: %w", r.name, err)
	}
	return nil
}

func sameMap(a, b *ebpf.Map) bool {
	ai, err1 := a.Info()
	bi, err2 := b.Info()
	if err1 != nil || err2 != nil {
		return false
	}
	aid, ok1 := ai.ID()
	bid, ok2 := bi.ID()
	return ok1 && ok2 && aid == bid
}

// resizeTable replaces t's map by one of size entries holding the same
// entries (see the steps above).
func resizeTable[K comparable, V any](ctx context.Context, r *resizable, t *bpfTable[K, V], size int) error {
	nm, err := r.create(size)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		nm.Close()
		return fmt.Errorf("resize %s from %d to %d entries: %w", r.name, r.size, size, err)
	}
	keys := make([]K, 0, cap(t.keys))
	vals := make([]V, 0, cap(t.keys))
	flush := func() error {
		err := copyEntries(nm, keys, vals, cap(t.keys), &r.copySyscalls)
		keys, vals = keys[:0], vals[:0]
		return err
	}
	var werr error
	err = t.walk(ctx, &r.copySyscalls, func(k K, v V) {
		if werr != nil {
			return
		}
		keys, vals = append(keys, k), append(vals, v)
		if len(keys) == cap(t.keys) {
			werr = flush()
		}
	})
	if err == nil {
		err = werr
	}
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fail(err)
	}
	if err := r.outer.Update(uint32(0), nm, ebpf.UpdateAny); err != nil {
		return fail(fmt.Errorf("switch outer map: %w", err))
	}
	// From here on the programs use nm.
	old := t.m
	t.m = nm
	old.Close()
	return r.repin(nm)
}

// copyEntries writes every keys[i] -> vals[i] into m, batch entries a
// syscall (one a syscall on kernels without batch ops), adding the
// syscalls to *syscalls.
func copyEntries[K, V any](m *ebpf.Map, keys []K, vals []V, batch int, syscalls *uint64) error {
	for off := 0; off < len(keys); {
		end := min(off+batch, len(keys))
		n, err := m.BatchUpdate(keys[off:end], vals[off:end], nil)
		*syscalls++
		if errors.Is(err, ebpf.ErrNotSupported) && n == 0 {
			if err := m.Update(&keys[off], &vals[off], ebpf.UpdateAny); err != nil {
				return err
			}
			n, err = 1, nil
		}
		if err != nil && n == 0 {
			return err
		}
		off += n
	}
	return nil
}

// pinOf returns the pin path of resizable map name in layout directory dir.
func pinOf(dir, name string) string { return filepath.Join(dir, name) }
