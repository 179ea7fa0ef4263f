package scenario

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/roles"
)

// snapshot reads every counter of the phase.
func (p *phase) snapshot(ctx context.Context) (phaseSnapshot, error) {
	return p.snapshotOf(ctx, roles.PoolStatsRequest{})
}

// snapshotOf is snapshot with the pool's stats as req asks (a progress
// line asks for Light ones).
func (p *phase) snapshotOf(ctx context.Context, req roles.PoolStatsRequest) (phaseSnapshot, error) {
	s := phaseSnapshot{at: time.Now()}
	if err := p.sim.Control.CallTimeout(ctx, 10*time.Second, "stats", nil, &s.sim); err != nil {
		return s, err
	}
	if err := p.pool.Control.CallTimeout(ctx, 10*time.Second, "stats", req, &s.pool); err != nil {
		return s, err
	}
	for _, r := range p.relays {
		var st roles.RelayStats
		if err := r.Control.CallTimeout(ctx, 10*time.Second, "stats", nil, &st); err != nil {
			return s, err
		}
		if i := len(s.relays); i < len(p.carry) {
			c := p.carry[i].Sink
			st.Sink.Txns += c.Txns
			st.Sink.Puts += c.Puts
			st.Sink.Deletes += c.Deletes
			st.Sink.Bytes += c.Bytes
			st.Shards.Takeovers += p.carry[i].Shards.Takeovers
			st.Shards.FencedOps += p.carry[i].Shards.FencedOps
		}
		s.relays = append(s.relays, st)
	}
	s.cpu = p.cpuNow()
	return s, nil
}

// cpuNow reads every sampled component's CPU seconds since it started.
func (p *phase) cpuNow() map[string]float64 {
	cpu := map[string]float64{}
	for _, name := range p.smp.Names() {
		cpu[name], _ = p.smp.Usage(name)
	}
	return cpu
}

// collectBootstrapOnly fills the result of a mode the scenario does not
// apply to.
func (p *phase) collectBootstrapOnly(ctx context.Context) error {
	s, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	p.res.GateOK = p.res.Gate.Mismatched == 0
	p.fillStatic(ctx, s)
	return nil
}

// collect computes the mode's figures from the two snapshots.
func (p *phase) collect(ctx context.Context, before, after phaseSnapshot) error {
	r := p.res
	n := float64(len(p.nodes))
	window := after.at.Sub(before.at).Seconds()
	r.ScenarioSeconds = window

	r.Writes.EndpointEvents = after.sim.Events - before.sim.Events
	r.Writes.ServiceChanges = after.sim.ServiceChanges - before.sim.ServiceChanges
	for i := range after.relays {
		a, b := after.relays[i].Sink, before.relays[i].Sink
		r.Writes.EtcdTxns += a.Txns - b.Txns
		r.Writes.EtcdPuts += a.Puts - b.Puts
		r.Writes.EtcdDeletes += a.Deletes - b.Deletes
		r.Writes.EtcdFencedOps += after.relays[i].Shards.FencedOps - before.relays[i].Shards.FencedOps
	}
	dp := func(a, b uint64) float64 { return float64(a-b) / n }
	r.Writes.MapWrites = (after.pool.Updates - before.pool.Updates) + (after.pool.Deletes - before.pool.Deletes)
	r.PerNode.CPUSeconds = (after.cpu[results.CompNodes] - before.cpu[results.CompNodes]) / n
	if pool := after.cpu[results.CompNodes] - before.cpu[results.CompNodes]; pool > 0 {
		r.PerNode.GCShare = (after.pool.GCCPUSeconds - before.pool.GCCPUSeconds) / pool
	}
	r.PerNode.BytesReceived = float64(after.pool.BytesReceived-before.pool.BytesReceived) / n
	r.PerNode.MapUpdates = dp(after.pool.Updates, before.pool.Updates)
	r.PerNode.MapDeletes = dp(after.pool.Deletes, before.pool.Deletes)
	r.PerNode.MapSyscalls = dp(after.pool.Syscalls, before.pool.Syscalls)
	applies := after.pool.Applies - before.pool.Applies
	r.PerNode.Applies = float64(applies) / n
	if applies > 0 {
		r.PerNode.SyscallsPerApply = float64(after.pool.Syscalls-before.pool.Syscalls) / float64(applies)
	}
	for i := len(after.pool.PerMapHist) - 1; i > 0; i-- {
		if after.pool.PerMapHist[i]-before.pool.PerMapHist[i] > 0 {
			r.PerNode.MaxSyscallsPerMapPerApply = i
			break
		}
	}
	if r.Writes.EndpointEvents > 0 {
		r.PerNode.CPUMsPerEvent = r.PerNode.CPUSeconds * 1000 / float64(r.Writes.EndpointEvents)
	}
	r.Istiod.BytesScenario = after.sim.Istiod.Bytes - before.sim.Istiod.Bytes

	for name, cpu := range after.cpu {
		cr := p.component(name)
		cr.CPUSeconds = cpu - before.cpu[name]
	}

	// Lag: every endpoint change of the window, matched with the nodes'
	// writes.
	var evs roles.EventsResult
	if err := p.sim.Control.CallTimeout(ctx, time.Minute, "events", roles.EventsRequest{From: before.sim.Events}, &evs); err != nil {
		return err
	}
	var samples roles.SamplesResult
	if err := p.pool.Control.CallTimeout(ctx, time.Minute, "samples", roles.SamplesRequest{}, &samples); err != nil {
		return err
	}
	holders := map[int]int{}
	for _, nd := range p.nodes {
		for _, s := range nd.Services {
			holders[s]++
		}
	}
	all := p.mode == config.ModeDirect && p.cfg.DirectScope == "all"
	holdersOf := func(svc int) int {
		if all {
			return len(p.nodes)
		}
		return holders[svc]
	}
	r.Lag = measure.ComputeLag(evs.Events, samples.Samples, holdersOf)
	if k := r.Details.RelayKill; k != nil && k.ChurnTo > 0 {
		window := func(from, to int64) *measure.Lag {
			l := measure.ComputeLag(measure.PushedBetween(evs.Events, from, to), samples.Samples, holdersOf)
			// The writes of changes outside the window match nothing in
			// it: not a figure of the window.
			l.Unmatched, l.CDF = 0, nil
			return &l
		}
		k.BeforeLag = window(k.ChurnFrom, k.FailoverFrom-1)
		k.FailoverLag = window(k.FailoverFrom, k.FailoverTo)
		k.RejoinLag = window(k.FailoverTo+1, k.ChurnTo)
	}
	if p.mode == config.ModeRelay {
		var commits []measure.Commit
		for _, rc := range p.relays {
			var cr roles.CommitsResult
			if err := rc.Control.CallTimeout(ctx, time.Minute, "commits", roles.CommitsRequest{Since: before.at.UnixNano()}, &cr); err != nil {
				return err
			}
			commits = append(commits, cr.Commits...)
		}
		if f := os.Getenv(envStagesDump); f != "" {
			dumpStages(p.log, f, evs.Events, commits, samples.Deliveries, samples.Samples)
		}
		r.Lag.Stages, r.Lag.StagesByHolders, r.Lag.StageSamples = measure.ComputeStages(evs.Events, commits, samples.Deliveries, samples.Samples, holdersOf)
		if f, ok := measure.LargestFanout(commits, samples.Deliveries); ok {
			f.CPUMs = map[string]float64{}
			for _, name := range p.smp.Names() {
				if cpu, ok := p.smp.CPUBetween(name, f.Sent, f.Last); ok {
					f.CPUMs[name] = cpu * 1000
				}
			}
			r.Lag.Fanout = &f
		}
	}
	p.fillStatic(ctx, after)
	return nil
}

// fillStatic records the figures that are states rather than deltas:
// totals, memory, streams, etcd, series.
func (p *phase) fillStatic(ctx context.Context, s phaseSnapshot) {
	r := p.res
	n := float64(len(p.nodes))
	r.Istiod.Streams = s.sim.Streams
	r.Istiod.DeltaStreams = s.sim.DeltaStreams
	r.Istiod.StreamsTotal = s.sim.Istiod.StreamsTotal
	r.Istiod.BytesTotal = s.sim.Istiod.Bytes
	r.Istiod.Responses = s.sim.Istiod.Responses
	r.Istiod.Pushes = s.sim.Istiod.Pushes
	r.Istiod.Nacks = s.sim.Nacks
	r.Istiod.Violations = s.sim.Violations
	r.PerNode.Entries = float64(s.pool.Entries) / n
	r.PerNode.MemlockBytes = float64(s.pool.MemlockBytes) / n
	p.fillKernelMemlock(ctx)
	r.Agents, r.Direct = s.pool.Agents, s.pool.Direct
	r.Series = map[string][]measure.SamplePoint{}
	for _, name := range p.smp.Names() {
		cr := p.component(name)
		cr.TotalCPU, cr.MaxRSS = p.smp.Usage(name)
		r.Series[name] = p.smp.Series(name)
	}
	r.PerNode.PoolRSS = float64(p.component(results.CompNodes).MaxRSS) / n
	if p.mode == config.ModeRelay && p.etcdURL != "" {
		if m, err := measure.ScrapeEtcd(ctx, p.etcdURL); err == nil {
			r.Etcd = &m
		} else {
			p.log.Warn("etcd metrics", "err", err)
		}
	}
}

func (p *phase) component(name string) *results.Component {
	if p.res.Components == nil {
		p.res.Components = map[string]*results.Component{}
	}
	c := p.res.Components[name]
	if c == nil {
		c = &results.Component{}
		p.res.Components[name] = c
	}
	return c
}

// envStagesDump names a file that gets the raw timestamps the stage
// breakdown is computed from (JSON: events, commits, deliveries, samples),
// for analyses the report does not make, such as one fan-out's spread.
const envStagesDump = "MESHRELAY_STAGES_DUMP"

// dumpStages writes the stage breakdown's inputs to file; a failure is
// logged, not fatal: the dump is a debugging aid.
func dumpStages(log *slog.Logger, file string, events []measure.UpstreamEvent, commits []measure.Commit, deliveries []measure.Delivery, samples []measure.ApplySample) {
	b, err := json.Marshal(map[string]any{"events": events, "commits": commits, "deliveries": deliveries, "samples": samples})
	if err == nil {
		err = os.WriteFile(file, b, 0o644)
	}
	if err != nil {
		log.Warn("stage dump not written", "file", file, "err", err)
	}
}
