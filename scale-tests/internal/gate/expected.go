package gate

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/meshrelay/meshrelay/internal/istiodsim"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// The correctness gate compares what each node's datapath holds with what
// it should hold, computed from the simulator's Truth alone (never from
// meshrelay's translator or node model):
//
//	frontend "tcp/<vip>:<port>" → { "<endpoint address>:<target port>" → relative weight }
//
// Relative weights are the weights divided by their greatest common
// divisor, which is also how many slots the datapath gives each backend
// (datapath.AssignSlots) as long as their sum fits in datapath.MaxSlots;
// beyond that the datapath approximates and only the backend set is
// compared. Ids are never compared.

// FrontendState is the backends of one frontend with relative weights.
type FrontendState map[string]uint32

// WantService is what one service's frontends hold on a node that uses it.
type WantService struct {
	Index     int                      `json:"i"`
	Frontends map[string]FrontendState `json:"f"`
}

// Truth is the expected state of every live service.
type Truth struct {
	Services []WantService `json:"services"`
}

// FromSim computes the expected frontends of every live service.
func FromSim(truth []istiodsim.ServiceTruth) Truth {
	out := Truth{Services: make([]WantService, 0, len(truth))}
	for _, t := range truth {
		ws := WantService{Index: t.Index, Frontends: map[string]FrontendState{}}
		for _, vip := range t.VIPs {
			for _, p := range t.Ports {
				key := "tcp/" + netip.AddrPortFrom(netip.MustParseAddr(vip), uint16(p.Port)).String()
				fs := FrontendState{}
				for _, e := range t.Endpoints {
					if e.Health != v1.Health_HEALTHY && e.Health != v1.Health_HEALTH_UNKNOWN {
						continue // the datapath sends no connection to it
					}
					target, ok := e.TargetPorts[p.Port]
					if !ok {
						target = e.Port
					}
					w := e.Weight
					if w == 0 {
						w = 1
					}
					fs[e.Address+":"+strconv.FormatUint(uint64(target), 10)] = w
				}
				ws.Frontends[key] = reduceWeights(fs)
			}
		}
		out.Services = append(out.Services, ws)
	}
	return out
}

// reduceWeights divides the weights by their greatest common divisor.
func reduceWeights(fs FrontendState) FrontendState {
	var g uint32
	for _, w := range fs {
		g = gcd(g, w)
	}
	if g > 1 {
		for k, w := range fs {
			fs[k] = w / g
		}
	}
	return fs
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// exact reports whether the datapath represents fs's weights exactly.
func (fs FrontendState) exact() bool {
	var sum uint64
	for _, w := range fs {
		sum += uint64(w)
	}
	return sum <= datapath.MaxSlots && len(fs) <= datapath.MaxSlots
}

// StateOf turns a datapath dump into frontends with relative weights (the
// number of slots each backend holds, reduced).
func StateOf(st datapath.State) map[string]FrontendState {
	out := make(map[string]FrontendState, len(st.Frontends))
	for k, v := range st.Frontends {
		fs := FrontendState{}
		for i := uint32(0); i < v.SlotCount; i++ {
			s, ok := st.Slots[datapath.SlotKey{FrontendId: v.FrontendId, Slot: i}]
			if !ok {
				fs["<missing slot "+strconv.Itoa(int(i))+">"]++
				continue
			}
			b, ok := st.Backends[datapath.BackendKey{BackendId: s.BackendId}]
			if !ok {
				fs["<missing backend "+strconv.Itoa(int(s.BackendId))+">"]++
				continue
			}
			fs[b.AddrPort().String()]++
		}
		out[k.String()] = reduceWeights(fs)
	}
	return out
}

// CompareNode compares the frontends a node holds with those it should
// hold. It returns the number of differing frontends and a line for each of
// the first max.
func CompareNode(node string, got, want map[string]FrontendState, max int) (n int, diffs []string) {
	add := func(format string, args ...any) {
		n++
		if len(diffs) < max {
			diffs = append(diffs, node+": "+fmt.Sprintf(format, args...))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		w := want[k]
		g, ok := got[k]
		if !ok {
			add("frontend %s missing (want %d backends)", k, len(w))
			continue
		}
		if d := diffFrontend(g, w); d != "" {
			add("frontend %s: %s", k, d)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			add("frontend %s held but not wanted (%d backends)", k, len(got[k]))
		}
	}
	return n, diffs
}

// diffFrontend describes how got differs from want, or returns "".
func diffFrontend(got, want FrontendState) string {
	var missing, extra, weights []string
	for b, w := range want {
		g, ok := got[b]
		switch {
		case !ok:
			missing = append(missing, b)
		case want.exact() && g != w:
			weights = append(weights, fmt.Sprintf("%s weight %d want %d", b, g, w))
		}
	}
	for b := range got {
		if _, ok := want[b]; !ok {
			extra = append(extra, b)
		}
	}
	if len(missing)+len(extra)+len(weights) == 0 {
		return ""
	}
	slices.Sort(missing)
	slices.Sort(extra)
	slices.Sort(weights)
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, "missing backends "+strings.Join(missing, ","))
	}
	if len(extra) > 0 {
		parts = append(parts, "unexpected backends "+strings.Join(extra, ","))
	}
	if len(weights) > 0 {
		parts = append(parts, strings.Join(weights, ", "))
	}
	return strings.Join(parts, "; ")
}

type Result struct {
	Nodes int `json:"nodes"`
	// Mismatched counts the nodes whose datapath differs from the truth;
	// Diffs lists the first differences.
	Mismatched int      `json:"mismatched"`
	Diffs      []string `json:"diffs,omitempty"`
}
