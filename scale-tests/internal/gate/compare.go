package gate

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

type Result struct {
	Nodes int `json:"nodes"`
	// Mismatched counts the nodes whose datapath differs from the truth;
	// Diffs lists the first differences.
	Mismatched int      `json:"mismatched"`
	Diffs      []string `json:"diffs,omitempty"`
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
