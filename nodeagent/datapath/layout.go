package datapath

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// Layout versioning.
//
// The maps live in <PinPath>/v<hash>/, where hash covers every map's type,
// key and value size, flags, max entries (for the resizable maps of
// resize.go: their configured limit) and the BTF layout (member names,
// offsets and types) of its key and value. A restart with the same binary
// and options finds its pins and keeps their entries. A binary with a
// different layout (or different MaxEntries) creates fresh, empty maps in
// a new directory beside the old ones instead of failing on, or
// misreading, the old maps. Migration is a rebuild rather than a copy:
//
//  1. OpenBPF creates the new maps; the old ones keep serving traffic
//     through the programs still attached (which hold references to them).
//  2. The agent's Dump of the new maps is empty, so its first Apply writes
//     its whole wanted state into them.
//  3. Programs.Install swaps the attached programs (link.Update) to ones
//     that use the new maps: one atomic switch per hook.
//  4. RemoveStaleLayouts unpins the old directories; the kernel frees the
//     old maps when the last program using them is gone.
//
// Kernel-written state (rev_nat, usage, miss_limit) starts empty in the
// new layout: connections opened before the switch see their backend's
// address in getpeername/recvmsg.

// datapathSpec returns the embedded collection spec with the map sizes of
// sizes and every map pinned by name.
func datapathSpec(sizes MaxEntries) (*ebpf.CollectionSpec, error) {
	spec, err := loadMeshrelay()
	if err != nil {
		return nil, err
	}
	for name, ms := range spec.Maps {
		if inner, ok := strings.CutSuffix(name, "_outer"); ok && ms.InnerMap != nil {
			// A resizable map (resize.go): the outer map is pinned, its
			// inner maps are sized at run time. The configured limit is
			// part of the layout through the template.
			ms.InnerMap.MaxEntries = uint32(sizes.byName(inner))
			ms.Pinning = ebpf.PinByName
			continue
		}
		n := sizes.byName(name)
		if n == 0 {
			// .rodata and friends: not pinned, owned by each load.
			continue
		}
		ms.MaxEntries = uint32(n)
		ms.Pinning = ebpf.PinByName
	}
	return spec, nil
}

// pinnedMaps returns the names of the spec's pinned maps, sorted.
func pinnedMaps(spec *ebpf.CollectionSpec) []string {
	var names []string
	for name, ms := range spec.Maps {
		if ms.Pinning == ebpf.PinByName {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// layoutHash returns the hex hash (12 digits) of the pinned maps' layouts.
func layoutHash(spec *ebpf.CollectionSpec) string {
	h := sha256.New()
	for _, name := range pinnedMaps(spec) {
		h.Write([]byte(layoutString(name, spec.Maps[name])))
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// layoutString describes everything about a map that must match for two
// programs to share it.
func layoutString(name string, ms *ebpf.MapSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s type=%s key=%d value=%d flags=%#x max=%d", name, ms.Type, ms.KeySize, ms.ValueSize, ms.Flags, ms.MaxEntries)
	if ms.Key != nil {
		b.WriteString(" k=")
		writeLayout(&b, ms.Key, 0)
	}
	if ms.Value != nil && ms.InnerMap == nil {
		b.WriteString(" v=")
		writeLayout(&b, ms.Value, 0)
	}
	if ms.InnerMap != nil {
		b.WriteString(" inner=")
		b.WriteString(strings.TrimSuffix(layoutString(name, ms.InnerMap), "\n"))
	}
	b.WriteString("\n")
	return b.String()
}

func writeLayout(b *strings.Builder, t btf.Type, depth int) {
	if depth > 8 {
		b.WriteString("...")
		return
	}
	t = btf.UnderlyingType(t)
	switch t := t.(type) {
	case *btf.Struct:
		writeMembers(b, "struct", t.Size, t.Members, depth)
	case *btf.Union:
		writeMembers(b, "union", t.Size, t.Members, depth)
	case *btf.Array:
		fmt.Fprintf(b, "[%d]", t.Nelems)
		writeLayout(b, t.Type, depth+1)
	case *btf.Int:
		fmt.Fprintf(b, "int%d/%d", t.Size*8, t.Encoding)
	default:
		size, _ := btf.Sizeof(t)
		fmt.Fprintf(b, "%T/%d", t, size)
	}
}

func writeMembers(b *strings.Builder, kind string, size uint32, members []btf.Member, depth int) {
	fmt.Fprintf(b, "%s/%d{", kind, size)
	for _, m := range members {
		fmt.Fprintf(b, "%s@%d:", m.Name, m.Offset)
		writeLayout(b, m.Type, depth+1)
		b.WriteString(";")
	}
	b.WriteString("}")
}
