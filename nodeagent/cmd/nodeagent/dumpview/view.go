package dumpview

import (
	"slices"
	"strconv"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
)

// View is a datapath state in readable form, as `nodeagent dump` prints it
// (JSON).
type View struct {
	Frontends []FrontendView `json:"frontends"`
	// Entries counts the entries of each map.
	Entries map[string]int `json:"entries"`
	// Problems lists inconsistencies (datapath.State.Check) and entries no
	// frontend reaches.
	Problems []string `json:"problems,omitempty"`
	// Maps is the capacity of every pinned map, as the kernel reports it
	// (set by WithMaps).
	Maps []MapView `json:"maps,omitempty"`
}

// MapView is one pinned map's size: its entries (-1 where the kernel
// writes the map and nobody counts), its current capacity, the most it may
// grow to, and the kernel's memlock figure for it.
type MapView struct {
	Name         string `json:"name"`
	Entries      int    `json:"entries"`
	MaxEntries   int    `json:"max_entries"`
	Limit        int    `json:"limit"`
	MemlockBytes uint64 `json:"memlock_bytes"`
}

// WithMaps adds every map's capacity and kernel memlock to v.
func (v View) WithMaps(maps []datapath.MapStats) View {
	for _, m := range maps {
		v.Maps = append(v.Maps, MapView{Name: m.Name, Entries: m.Entries, MaxEntries: m.MaxEntries, Limit: m.Limit, MemlockBytes: m.MemlockBytes})
	}
	return v
}

// FrontendView is one frontend: "127.77.0.1:80/tcp", its id, its slot count
// and its backends with the slots each holds.
type FrontendView struct {
	Frontend string        `json:"frontend"`
	ID       uint32        `json:"id"`
	Slots    uint32        `json:"slots"`
	Backends []BackendView `json:"backends"`
}

// BackendView is one backend of a frontend.
type BackendView struct {
	Addr  string `json:"addr"` // address:target port
	ID    uint32 `json:"id"`
	Slots int    `json:"slots"`
}

// NewView returns the view of st, frontends sorted by VIP, port and protocol.
func NewView(st datapath.State) View {
	v := View{
		Frontends: []FrontendView{},
		Entries: map[string]int{
			datapath.MapFrontends: len(st.Frontends),
			datapath.MapSlots:     len(st.Slots),
			datapath.MapBackends:  len(st.Backends),
		},
	}
	keys := make([]datapath.FrontendKey, 0, len(st.Frontends))
	for k := range st.Frontends {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, nodemodel.CompareKeys)
	reached := 0
	usedBackends := map[uint32]bool{}
	for _, k := range keys {
		fv := st.Frontends[k]
		f := FrontendView{
			Frontend: k.AddrPort().String() + "/" + datapath.Protocol(k.Proto).String(),
			ID:       fv.FrontendId,
			Slots:    fv.SlotCount,
			Backends: []BackendView{},
		}
		table := st.SlotTable(k)
		reached += len(table)
		count := map[uint32]int{}
		var order []uint32
		for _, b := range table {
			if count[b] == 0 {
				order = append(order, b)
			}
			count[b]++
			usedBackends[b] = true
		}
		slices.Sort(order)
		for _, b := range order {
			bv := BackendView{ID: b, Slots: count[b], Addr: "missing"}
			if be, ok := st.Backends[datapath.BackendKey{BackendId: b}]; ok {
				bv.Addr = be.String()
			}
			f.Backends = append(f.Backends, bv)
		}
		v.Frontends = append(v.Frontends, f)
	}
	if err := st.Check(); err != nil {
		v.Problems = append(v.Problems, err.Error())
	}
	if n := len(st.Slots) - reached; n > 0 {
		v.Problems = append(v.Problems, plural(n, "slot")+" reached by no frontend")
	}
	unused := 0
	for k := range st.Backends {
		if !usedBackends[k.BackendId] {
			unused++
		}
	}
	if unused > 0 {
		v.Problems = append(v.Problems, plural(unused, "backend")+" used by no slot")
	}
	return v
}

func plural(n int, what string) string {
	s := strconv.Itoa(n) + " " + what
	if n != 1 {
		s += "s"
	}
	return s
}
