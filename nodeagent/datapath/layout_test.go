package datapath

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestGoLayoutMatchesC compares every generated Go type with the C struct
// of the same name in the object's BTF: size and each member's offset.
func TestGoLayoutMatchesC(t *testing.T) {
	spec, err := loadMeshrelay()
	if err != nil {
		t.Fatal(err)
	}
	for cName, goValue := range map[string]any{
		"frontend_key":   FrontendKey{},
		"frontend_value": FrontendValue{},
		"slot_key":       SlotKey{},
		"slot_value":     SlotValue{},
		"backend_key":    BackendKey{},
		"backend_value":  BackendValue{},
		"revnat_key":     meshrelayRevnatKey{},
		"revnat_value":   meshrelayRevnatValue{},
		"cidr_key":       meshrelayCidrKey{},
		"miss_key":       meshrelayMissKey{},
		"miss_report":    meshrelayMissReport{},
		"usage_key":      meshrelayUsageKey{},
		"usage_value":    meshrelayUsageValue{},
	} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(cName, &st); err != nil {
			t.Errorf("%s: %v", cName, err)
			continue
		}
		gt := reflect.TypeOf(goValue)
		if int(st.Size) != binary.Size(goValue) || uintptr(st.Size) != gt.Size() {
			t.Errorf("%s: C size %d, Go binary.Size %d, unsafe size %d", cName, st.Size, binary.Size(goValue), gt.Size())
		}
		var fields []reflect.StructField
		for i := range gt.NumField() {
			if f := gt.Field(i); f.Name != "_" {
				fields = append(fields, f)
			}
		}
		if len(fields) != len(st.Members) {
			t.Errorf("%s: %d C members, %d Go fields", cName, len(st.Members), len(fields))
			continue
		}
		for i, m := range st.Members {
			size, _ := btf.Sizeof(m.Type)
			if uintptr(m.Offset.Bytes()) != fields[i].Offset || uintptr(size) != fields[i].Type.Size() {
				t.Errorf("%s.%s: C offset %d size %d, Go %s offset %d size %d", cName, m.Name, m.Offset.Bytes(), size,
					fields[i].Name, fields[i].Offset, fields[i].Type.Size())
			}
		}
	}
}

func TestMapSpecs(t *testing.T) {
	spec, err := datapathSpec(MaxEntries{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{MapFrontends, MapSlots, MapBackends} {
		outer := spec.Maps[outerName(name)]
		if outer == nil || outer.Type != ebpf.ArrayOfMaps || outer.MaxEntries != 1 || outer.Pinning != ebpf.PinByName {
			t.Fatalf("map %s: no pinned one-slot outer map: %+v", name, outer)
		}
		ms := outer.InnerMap
		if ms.Type.String() != "Hash" || ms.Flags&flagNoPrealloc == 0 {
			t.Errorf("%s: type %s flags %#x, want a BPF_F_NO_PREALLOC hash", name, ms.Type, ms.Flags)
		}
	}
	// The C placeholders match the Go defaults, so bpftool on a fresh
	// object and the agent agree.
	raw, err := loadMeshrelay()
	if err != nil {
		t.Fatal(err)
	}
	def := MaxEntries{}.withDefaults()
	for name, ms := range raw.Maps {
		if inner, ok := strings.CutSuffix(name, "_outer"); ok {
			name, ms = inner, ms.InnerMap
		}
		if n := def.byName(name); n != 0 && int(ms.MaxEntries) != n {
			t.Errorf("%s: C max_entries %d, Go default %d", name, ms.MaxEntries, n)
		}
	}
}

func TestLayoutHash(t *testing.T) {
	a, _ := datapathSpec(MaxEntries{}.withDefaults())
	b, _ := datapathSpec(MaxEntries{}.withDefaults())
	c, _ := datapathSpec(MaxEntries{Backends: 1000}.withDefaults())
	if layoutHash(a) != layoutHash(b) {
		t.Error("same layout, different hashes")
	}
	if layoutHash(a) == layoutHash(c) {
		t.Error("different max entries, same hash")
	}
	// The hash covers the BTF layout, not just sizes.
	desc := layoutString(MapFrontends, a.Maps[outerName(MapFrontends)])
	for _, want := range []string{"addr@0", "port@128", "proto@144", "frontend_id@0", "slot_count@32"} {
		if !strings.Contains(desc, want) {
			t.Errorf("layout %q lacks %q", desc, want)
		}
	}
}

func TestEntryAddresses(t *testing.T) {
	for _, s := range []string{"127.77.1.2:80", "[fd00::1]:8443"} {
		ap := netip.MustParseAddrPort(s)
		k := NewFrontendKey(ap, UDP)
		if k.AddrPort() != ap || k.Proto != 17 {
			t.Errorf("%s: key round trip %s", s, k)
		}
		v := NewBackendValue(ap)
		if v.AddrPort() != ap {
			t.Errorf("%s: backend round trip %s", s, v)
		}
	}
	k := NewFrontendKey(netip.MustParseAddrPort("127.77.0.1:8080"), TCP)
	port := (*[2]byte)(unsafe.Pointer(&k.Port))
	if port[0] != 0x1f || port[1] != 0x90 {
		t.Errorf("port bytes %x, want network order 1f90", port[:])
	}
	if k.Addr[10] != 0xff || k.Addr[11] != 0xff || k.Addr[12] != 127 {
		t.Errorf("IPv4 address not v4-mapped: %x", k.Addr)
	}
	if NewBackendValue(netip.MustParseAddrPort("127.0.0.1:1")).Family != familyIPv4 ||
		NewBackendValue(netip.MustParseAddrPort("[::1]:1")).Family != familyIPv6 {
		t.Error("backend family wrong")
	}
}
