package gate

import (
	"net/netip"
	"strconv"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
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
