package measure

import (
	"context"
	"net/netip"
	"slices"
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
//
// While samples are recorded (a scenario), Apply only notes each change
// set with its time; Settle computes their samples later, so that the
// harness's own bookkeeping is not counted as the node's CPU during the
// scenario. Outside recording, Apply updates the mirror at once.
type Probe struct {
	// Inner is the datapath the probe wraps.
	Inner datapath.Datapath
	node  int32
	log   *SampleLog

	mu sync.Mutex
	// reach mirrors the node's maps and counts reachable slots per
	// backend address.
	reach *reachability
	// pending are the change sets applied while recording and not yet
	// mirrored, oldest first (Settle).
	pending []pendingApply

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
	pa := pendingApply{at: now, record: p.log.Enabled.Load()}
	if err == nil {
		pa.cs = cs // mirrored below, before Apply returns
		if pa.record {
			pa.cs = cloneChangeSet(cs) // mirrored later: the caller may reuse cs's slices
		}
	} else if dump, derr := p.Inner.Dump(ctx); derr == nil {
		pa.reset = &dump // a partial apply: mirror what the maps hold
	} else {
		return st, err
	}
	p.mu.Lock()
	p.pending = append(p.pending, pa)
	if !pa.record {
		p.settleLocked()
	}
	p.mu.Unlock()
	return st, err
}

// pendingApply is one change set applied (or, after a failed apply, the
// maps' whole state) not yet mirrored.
type pendingApply struct {
	at     int64
	record bool // samples are wanted
	cs     datapath.ChangeSet
	reset  *datapath.State
}

// Settle mirrors the change sets noted while recording, in order, and
// adds their samples to the log.
func (p *Probe) Settle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.settleLocked()
}

func (p *Probe) settleLocked() {
	var samples []ApplySample
	for _, pa := range p.pending {
		var gained, lost []netip.Addr
		if pa.reset != nil {
			gained, lost = p.reach.reset(*pa.reset)
		} else {
			gained, lost = p.reach.apply(pa.cs)
		}
		if !pa.record {
			continue
		}
		for _, addr := range gained {
			samples = append(samples, ApplySample{Node: p.node, addr: addr, Added: true, At: pa.at})
		}
		for _, addr := range lost {
			samples = append(samples, ApplySample{Node: p.node, addr: addr, At: pa.at})
		}
	}
	clear(p.pending)
	p.pending = p.pending[:0]
	p.log.addRecorded(samples)
}

// cloneChangeSet copies cs's slices.
func cloneChangeSet(cs datapath.ChangeSet) datapath.ChangeSet {
	return datapath.ChangeSet{
		DeleteFrontends: slices.Clone(cs.DeleteFrontends),
		DeleteSlots:     slices.Clone(cs.DeleteSlots),
		DeleteBackends:  slices.Clone(cs.DeleteBackends),
		UpsertBackends:  slices.Clone(cs.UpsertBackends),
		UpsertSlots:     slices.Clone(cs.UpsertSlots),
		UpsertFrontends: slices.Clone(cs.UpsertFrontends),
		TrimSlots:       slices.Clone(cs.TrimSlots),
		TrimBackends:    slices.Clone(cs.TrimBackends),
	}
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
