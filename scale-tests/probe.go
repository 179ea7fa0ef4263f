package main

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// probe wraps a simulated node's datapath. It passes every call through
// and notes, after each Apply, which backend addresses became reachable
// (some frontend's slot points at them) and which stopped being reachable,
// with the time: the apply side of the propagation lag (the simulator's
// recorder has the push side). Reachability, not the presence of a backend
// entry, is what connections see: an unreferenced entry deleted later is
// no longer a destination. Both modes use it, so its small cost is the
// same in both.
type probe struct {
	inner datapath.Datapath
	node  int32
	log   *sampleLog

	mu sync.Mutex
	// reach mirrors the node's maps and counts reachable slots per
	// backend address.
	reach *reachability

	applies   atomic.Int64
	lastApply atomic.Int64
	failures  atomic.Int64

	// perMap counts the write syscalls of the current Apply per map (set
	// by trace, which the memory datapath calls inside Apply).
	perMap [3]int
	// perMapHist counts applies by the most syscalls one map took in
	// them: 1, 2, 3, 4 or more (index 0 unused).
	perMapHist [5]atomic.Int64
}

var _ datapath.Datapath = (*probe)(nil)

// newProbe returns a probe for node; set its inner datapath before use
// (the memory datapath takes the probe's trace as an option).
func newProbe(node int32, log *sampleLog) *probe {
	return &probe{node: node, log: log, reach: newReachability()}
}

// trace is the memory datapath's Trace hook: one call per write syscall.
// Apply calls are serialised, so perMap belongs to the running Apply.
func (p *probe) trace(w datapath.Write) {
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
func (p *probe) Apply(ctx context.Context, cs datapath.ChangeSet) (datapath.ApplyStats, error) {
	p.perMap = [3]int{}
	st, err := p.inner.Apply(ctx, cs)
	if cs.Empty() {
		return st, err
	}
	if most := max(p.perMap[0], p.perMap[1], p.perMap[2]); most > 0 {
		p.perMapHist[min(most, 4)].Add(1)
	}
	now := time.Now().UnixNano()
	if err != nil {
		p.failures.Add(1)
	}
	p.applies.Add(1)
	p.lastApply.Store(now)
	var samples []applySample
	record := p.log.enabled.Load()
	p.mu.Lock()
	var gained, lost []netip.Addr
	if err == nil {
		gained, lost = p.reach.apply(cs)
	} else if dump, derr := p.inner.Dump(ctx); derr == nil {
		gained, lost = p.reach.reset(dump) // a partial apply: mirror what the maps hold
	}
	if record {
		for _, addr := range gained {
			samples = append(samples, applySample{Node: p.node, addr: addr, Added: true, At: now})
		}
		for _, addr := range lost {
			samples = append(samples, applySample{Node: p.node, addr: addr, At: now})
		}
	}
	p.mu.Unlock()
	p.log.add(samples)
	return st, err
}

// Dump implements datapath.Datapath.
func (p *probe) Dump(ctx context.Context) (datapath.State, error) { return p.inner.Dump(ctx) }

// Stats implements datapath.Datapath.
func (p *probe) Stats() datapath.Stats { return p.inner.Stats() }

// Close implements datapath.Datapath.
func (p *probe) Close() error { return p.inner.Close() }

// Attach implements datapath.Datapath.
func (p *probe) Attach(ctx context.Context, cidrs []netip.Prefix) (*datapath.Programs, error) {
	return p.inner.Attach(ctx, cidrs)
}

// applySample is one backend address written to (Added) or deleted from a
// node's maps, at At (Unix nanoseconds).
type applySample struct {
	Node  int32      `json:"n"`
	Addr  string     `json:"a"`
	Added bool       `json:"add,omitempty"`
	At    int64      `json:"t"`
	addr  netip.Addr // Addr before encoding
}

// sampleLog collects the samples of all nodes of a pool, once enabled
// (the initial sync has no upstream events to match).
type sampleLog struct {
	enabled atomic.Bool
	mu      sync.Mutex
	samples []applySample
}

func (l *sampleLog) add(s []applySample) {
	if len(s) == 0 || !l.enabled.Load() {
		return
	}
	l.mu.Lock()
	l.samples = append(l.samples, s...)
	l.mu.Unlock()
}

// from returns the samples from index from on, with their addresses
// formatted, and the index to ask from next.
func (l *sampleLog) from(from int) ([]applySample, int) {
	l.mu.Lock()
	var out []applySample
	if from < len(l.samples) {
		out = append(out, l.samples[from:]...)
	}
	next := len(l.samples)
	l.mu.Unlock()
	for i := range out {
		out[i].Addr = out[i].addr.String()
	}
	return out, next
}
