package roles

import (
	"context"
	"errors"
	"fmt"
	"runtime/metrics"
	"sync"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/scale-tests/internal/control"
	"github.com/meshrelay/meshrelay/scale-tests/internal/gate"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/workload"
)

// A pool is one process holding every simulated node of a mode. The two
// pool roles (relay-nodes, direct-nodes) share this file's bookkeeping:
// the probes, the samples, the counters and the correctness check.

// PoolConfig configures a node pool.
type PoolConfig struct {
	Nodes           []workload.Node `json:"nodes"`
	Namespaces      int             `json:"namespaces"`
	PortsPerService int             `json:"portsPerService"`

	// Relay mode.
	Etcd     []string `json:"etcd,omitempty"`
	Cluster  string   `json:"cluster,omitempty"`
	OnDemand bool     `json:"onDemand,omitempty"`

	// Direct mode.
	Istiod string `json:"istiod,omitempty"`
	// AllServices makes direct nodes write every service, not just the
	// ones their node uses.
	AllServices bool `json:"allServices,omitempty"`
	// XDSAPI is the API direct nodes consume: config.APISotW (empty) or
	// config.APIWorkload.
	XDSAPI string `json:"xdsApi,omitempty"`
}

// PoolStats sums the counters of a pool's nodes.
type PoolStats struct {
	Nodes int `json:"nodes"`
	// Applies counts non-empty datapath applies; Failures those that
	// failed; LastApply is the latest (Unix nanoseconds).
	Applies   int64 `json:"applies"`
	Failures  int64 `json:"failures"`
	LastApply int64 `json:"lastApply"`
	// Map writes, summed over the three maps of every node.
	Updates  uint64 `json:"updates"`
	Deletes  uint64 `json:"deletes"`
	Syscalls uint64 `json:"syscalls"`
	Batches  uint64 `json:"batches"`
	// Entries held and modelled kernel memlock, summed over the nodes
	// (the "memlock" verb measures the kernel's; kernelmemlock.go).
	Entries      int64  `json:"entries"`
	MemlockBytes uint64 `json:"memlockBytes"`
	// BytesReceived counts what the nodes received on the wire.
	BytesReceived int64 `json:"bytesReceived"`
	// PerMapHist counts applies by the most write syscalls one map took
	// in them: index 1, 2, 3, and 4 for four or more.
	PerMapHist [5]int64 `json:"perMapHist"`
	// Agents (relay mode) or Direct (direct mode) sum the nodes' own
	// counters.
	Agents *results.AgentTotals  `json:"agents,omitempty"`
	Direct *results.DirectTotals `json:"direct,omitempty"`

	// DeletesByMap splits Deletes by map name.
	DeletesByMap map[string]uint64 `json:"deletesByMap,omitempty"`

	// GCCPUSeconds is the CPU the pool process's garbage collector has
	// spent since it started (runtime/metrics, an estimate by the runtime).
	GCCPUSeconds float64 `json:"gcCpuSeconds"`
}

type SamplesRequest struct {
	From int `json:"from"`
	// Enable switches sample recording on or off (nil: unchanged).
	Enable *bool `json:"enable,omitempty"`
}

type SamplesResult struct {
	Samples []measure.ApplySample `json:"samples"`
	// Deliveries are the relay-mode agents' watch deliveries, when From
	// is 0.
	Deliveries []measure.Delivery `json:"deliveries,omitempty"`
	Next       int                `json:"next"`
}

// poolNode is one simulated node's harness side.
type poolNode struct {
	spec  workload.Node
	probe *measure.Probe
	mem   *datapath.Memory
	// maps is the node's map counters as stats last read them, after
	// mapsApplies applies (pool.stats; guarded by pool.statsMu).
	maps        []datapath.MapStats
	mapsApplies int64
}

// pool is the shared part of both pool roles.
type pool struct {
	cfg     PoolConfig
	nodes   []*poolNode
	statsMu sync.Mutex // serialises stats, for the nodes' maps fields
	samples measure.SampleLog
	// deliveries are the agents' watch deliveries (relay mode), recorded
	// while samples are.
	deliveries measure.DeliveryLog
	bytes      measure.ByteCounter
	// totals fills the mode's own counters into a PoolStats.
	totals func(*PoolStats)
	// prof writes CPU profiles when the environment asks (poolprofile.go);
	// nil otherwise.
	prof *poolProfile
	// memlockPins is the bpffs directory kernelMemlock pins its replays
	// under; "" is datapath.BPFFSMount.
	memlockPins string

	mu   sync.Mutex
	want map[int]gate.WantService
	// wantGen counts the expect calls: which want a node's match was for.
	wantGen uint64

	// checkMu serializes check, which owns matched.
	checkMu sync.Mutex
	// matched: per node, the want (wantGen) its datapath last matched and
	// its probe's apply count read before that dump. A node whose count
	// has not moved since holds the same state: check skips its dump.
	matched []nodeMatch
}

// nodeMatch is what a node last matched (pool.matched).
type nodeMatch struct {
	wantGen, applies uint64
}

func newPool(cfg PoolConfig) *pool {
	return &pool{cfg: cfg}
}

// addNode creates node i's memory datapath, wrapped in its probe.
func (p *pool) addNode(i int, spec workload.Node, opts datapath.MemoryOptions) *poolNode {
	pr := measure.NewProbe(int32(i), &p.samples)
	opts.Trace = pr.Trace
	mem := datapath.NewMemory(opts)
	pr.Inner = mem
	n := &poolNode{spec: spec, mem: mem, probe: pr}
	p.nodes = append(p.nodes, n)
	return n
}

// register adds the control verbs every pool serves.
func (p *pool) register(ctl *control.Server) {
	control.Handle(ctl, "stats", func(ctx context.Context, req PoolStatsRequest) (PoolStats, error) { return p.stats(req.Light), nil })
	control.Handle(ctl, "samples", func(ctx context.Context, req SamplesRequest) (SamplesResult, error) {
		if req.Enable != nil {
			p.samples.Enabled.Store(*req.Enable)
			p.deliveries.Enabled.Store(*req.Enable)
			if *req.Enable {
				p.prof.scenarioStarted()
			}
		}
		for _, n := range p.nodes {
			n.probe.Settle()
		}
		s, next := p.samples.From(req.From)
		res := SamplesResult{Samples: s, Next: next}
		if req.From == 0 {
			res.Deliveries = p.deliveries.All()
		}
		return res, nil
	})
	control.Handle(ctl, "expect", func(ctx context.Context, t gate.Truth) (struct{}, error) {
		want := make(map[int]gate.WantService, len(t.Services))
		for _, s := range t.Services {
			want[s.Index] = s
		}
		p.mu.Lock()
		p.want = want
		p.wantGen++
		p.mu.Unlock()
		return struct{}{}, nil
	})
	control.Handle(ctl, "memlock", p.kernelMemlock)
	control.Handle(ctl, "check", func(ctx context.Context, req struct {
		MaxDiffs int `json:"maxDiffs"`
	}) (gate.Result, error) {
		return p.check(ctx, req.MaxDiffs)
	})
}

// PoolStatsRequest is the "stats" verb's request.
type PoolStatsRequest struct {
	// Light leaves out the nodes' own counters (Agents, Direct) and the
	// deletes by map: what a progress line or a wait for quiet reads, asked
	// every second or faster while the pool's CPU is measured.
	Light bool `json:"light,omitempty"`
}

func (p *pool) stats(light bool) PoolStats {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	st := PoolStats{Nodes: len(p.nodes), BytesReceived: p.bytes.Received.Load()}
	if !light {
		st.DeletesByMap = map[string]uint64{}
	}
	for _, n := range p.nodes {
		applies := n.probe.Applies.Load()
		st.Applies += applies
		st.Failures += n.probe.Failures.Load()
		st.LastApply = max(st.LastApply, n.probe.LastApply.Load())
		for i := range st.PerMapHist {
			st.PerMapHist[i] += n.probe.PerMapHist[i].Load()
		}
		// A node's maps change only through its probe's Apply, which
		// counts after writing: the same count, the same maps (the
		// harness polls 1,000 nodes every second; most applied nothing).
		if n.maps == nil || n.mapsApplies != applies {
			n.maps, n.mapsApplies = n.mem.Stats().Maps, applies
		}
		for _, m := range n.maps {
			st.Updates += m.Updates
			st.Deletes += m.Deletes
			if !light {
				st.DeletesByMap[m.Name] += m.Deletes
			}
			st.Syscalls += m.Syscalls
			st.Batches += m.Batches
			st.Entries += int64(m.Entries)
			st.MemlockBytes += m.MemlockBytes
		}
	}
	if p.totals != nil && !light {
		p.totals(&st)
	}
	gc := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	if metrics.Read(gc); gc[0].Value.Kind() == metrics.KindFloat64 {
		st.GCCPUSeconds = gc[0].Value.Float64()
	}
	return st
}

// check compares every node's datapath with the expected state of the
// services it uses (every service, for direct nodes writing all of them).
//
// A node that matched this want before and applied nothing since is not
// dumped again: its datapath changes only through its probe's Apply, whose
// count is read before each dump (an apply under way then moves it).
func (p *pool) check(ctx context.Context, maxDiffs int) (gate.Result, error) {
	p.checkMu.Lock()
	defer p.checkMu.Unlock()
	p.mu.Lock()
	want, gen := p.want, p.wantGen
	p.mu.Unlock()
	if want == nil {
		return gate.Result{}, errors.New("check: no expected state (call expect first)")
	}
	if maxDiffs <= 0 {
		maxDiffs = 20
	}
	res := gate.Result{Nodes: len(p.nodes)}
	if len(p.matched) != len(p.nodes) {
		p.matched = make([]nodeMatch, len(p.nodes))
	}
	for i, n := range p.nodes {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		applies := uint64(n.probe.Applies.Load())
		if p.matched[i] == (nodeMatch{gen, applies}) {
			continue
		}
		expected := map[string]gate.FrontendState{}
		addService := func(ws gate.WantService) {
			for k, fs := range ws.Frontends {
				expected[k] = fs
			}
		}
		if p.cfg.AllServices {
			for _, ws := range want {
				addService(ws)
			}
		} else {
			for _, i := range n.spec.Services {
				if ws, ok := want[i]; ok {
					addService(ws)
				}
			}
		}
		st, err := n.mem.Dump(ctx)
		if err != nil {
			return res, fmt.Errorf("dump %s: %w", n.spec.Name, err)
		}
		bad, diffs := gate.CompareNode(n.spec.Name, gate.StateOf(st), expected, maxDiffs-len(res.Diffs))
		if bad > 0 {
			res.Mismatched++
			res.Diffs = append(res.Diffs, diffs...)
			p.matched[i] = nodeMatch{}
		} else {
			p.matched[i] = nodeMatch{gen, applies}
		}
	}
	return res, nil
}
