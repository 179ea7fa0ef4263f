package measure

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// Probe wraps a simulated node's datapath. It passes every call through
// and notes, after each Apply, which backend addresses became reachable
// (some frontend's slot points at them) and which stopped being reachable,
// with the time: the apply side of the propagation lag (the simulator's
// recorder has the push side). Reachability, not the presence of a backend
// entry, is what connections see: an unreferenced entry deleted later is
// no longer a destination. Both modes use it, so its small cost is the
// same in both.
type Probe struct {
	// Inner is the datapath the probe wraps.
	Inner datapath.Datapath
	node  int32
	log   *SampleLog

	mu sync.Mutex
	// reach mirrors the node's maps and counts reachable slots per
	// backend address.
	reach *reachability

	Applies   atomic.Int64
	LastApply atomic.Int64
	Failures  atomic.Int64

	// perMap counts the write syscalls of the current Apply per map (set
	// by trace, which the memory datapath calls inside Apply).
	perMap [3]int
	// perMapHist counts applies by the most syscalls one map took in
	// them: 1, 2, 3, 4 or more (index 0 unused).
	PerMapHist [5]atomic.Int64
}

var _ datapath.Datapath = (*Probe)(nil)

// NewProbe returns a probe for node; set its inner datapath before use
// (the memory datapath takes the probe's trace as an option).
func NewProbe(node int32, log *SampleLog) *Probe {
	return &Probe{node: node, log: log, reach: newReachability()}
}

// Trace is the memory datapath's Trace hook: one call per write syscall.
// Apply calls are serialised, so perMap belongs to the running Apply.
func (p *Probe) Trace(w datapath.Write) {
	switch w.Map {
	case datapath.MapFrontends:
		p.perMap[0]++
	case datapath.MapSlots:
		p.perMap[1]++
	case datapath.MapBackends:
		p.perMap[2]++
	}
}

// Apply implements datapath.Datapath.
func (p *Probe) Apply(ctx context.Context, cs datapath.ChangeSet) (datapath.ApplyStats, error) {
	p.perMap = [3]int{}
	st, err := p.Inner.Apply(ctx, cs)
	if cs.Empty() {
		return st, err
	}
	if most := max(p.perMap[0], p.perMap[1], p.perMap[2]); most > 0 {
		p.PerMapHist[min(most, 4)].Add(1)
	}
	now := time.Now().UnixNano()
	if err != nil {
		p.Failures.Add(1)
	}
	p.Applies.Add(1)
	p.LastApply.Store(now)
	var samples []ApplySample
	record := p.log.Enabled.Load()
	p.mu.Lock()
	var gained, lost []netip.Addr
	if err == nil {
		gained, lost = p.reach.apply(cs)
	} else if dump, derr := p.Inner.Dump(ctx); derr == nil {
		gained, lost = p.reach.reset(dump) // a partial apply: mirror what the maps hold
	}
	if record {
		for _, addr := range gained {
			samples = append(samples, ApplySample{Node: p.node, addr: addr, Added: true, At: now})
		}
		for _, addr := range lost {
			samples = append(samples, ApplySample{Node: p.node, addr: addr, At: now})
		}
	}
	p.mu.Unlock()
	p.log.add(samples)
	return st, err
}

// Dump implements datapath.Datapath.
func (p *Probe) Dump(ctx context.Context) (datapath.State, error) { return p.Inner.Dump(ctx) }

// Stats implements datapath.Datapath.
func (p *Probe) Stats() datapath.Stats { return p.Inner.Stats() }

// Attach implements datapath.Datapath.
func (p *Probe) Attach(ctx context.Context, cidrs []netip.Prefix) (*datapath.Programs, error) {
	return p.Inner.Attach(ctx, cidrs)
}

// Close implements datapath.Datapath.
func (p *Probe) Close() error { return p.Inner.Close() }
