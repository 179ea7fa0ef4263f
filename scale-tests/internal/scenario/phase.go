package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/gate"
	"github.com/meshrelay/meshrelay/scale-tests/internal/launch"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
	"github.com/meshrelay/meshrelay/scale-tests/internal/report"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/roles"
	"github.com/meshrelay/meshrelay/scale-tests/internal/workload"
)

// phase runs one mode of a run: it starts the mode's components (each its
// own process), waits for the initial sync, runs the scenario, waits for
// convergence, applies the correctness gate and collects the figures.
type phase struct {
	cfg     *config.Config
	mode    string
	nodes   []workload.Node
	l       *launch.Launcher
	log     *slog.Logger
	out     io.Writer
	tmp     string
	cluster string

	smp     *measure.Sampler
	sim     *launch.Component
	etcd    *launch.Component
	etcdURL string
	etcdDir string
	etcdGen int
	relays  []*launch.Component
	// carry holds, per relay replica, the write counters of its killed
	// processes, so that its totals survive a restart.
	carry []roles.RelayStats
	pool  *launch.Component

	// poolEnv is added to the node pool's environment (a memory limit
	// for the direct pool).
	poolEnv []string

	truth gate.Truth
	res   *results.Mode
}

// phaseSnapshot is every counter of a phase at one instant.
type phaseSnapshot struct {
	at     time.Time
	sim    roles.SimStats
	pool   roles.PoolStats
	relays []roles.RelayStats
	cpu    map[string]float64
}

func relayName(i int) string { return "relay-" + strconv.Itoa(i) }

// run runs the phase and fills p.res. A Component that dies ends it with
// that failure.
func (p *phase) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case c := <-p.l.Died:
			cancel(c.Failure())
		case <-ctx.Done():
		}
	}()
	defer p.shutdown()
	go p.smp.Run(ctx)

	err := p.steps(ctx)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause // a Component died: that is the error to report
	}
	return err
}

// stop stops the phase's components downstream first (nodes, relays,
// etcd, simulator), so that none logs the loss of the one before it.
func (p *phase) shutdown() {
	const grace = 5 * time.Second
	if p.pool != nil {
		p.pool.Stop(grace)
	}
	var wg sync.WaitGroup
	for _, r := range p.relays {
		wg.Go(func() { r.Stop(grace) })
	}
	wg.Wait()
	if p.etcd != nil {
		p.etcd.Stop(grace)
	}
	if p.sim != nil {
		p.sim.Stop(grace)
	}
	p.l.StopAll(grace)
}

func (p *phase) steps(ctx context.Context) error {
	if err := p.startSim(ctx); err != nil {
		return err
	}
	if p.mode == config.ModeRelay {
		if err := p.startEtcd(ctx); err != nil {
			return err
		}
		if err := p.startRelays(ctx); err != nil {
			return err
		}
	}
	if err := p.startNodes(ctx); err != nil {
		return err
	}
	if !p.cfg.AppliesTo(p.mode) {
		p.res.Skipped = fmt.Sprintf("scenario %s does not apply to %s mode (no relay, no etcd)", p.cfg.Scenario, p.mode)
		p.progress("%s: %s; initial sync measured only", p.mode, p.res.Skipped)
		return p.collectBootstrapOnly(ctx)
	}
	before, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	enable := true
	if err := p.pool.Control.Call(ctx, "samples", roles.SamplesRequest{From: 1 << 62, Enable: &enable}, nil); err != nil {
		return err
	}
	p.res.ScenarioStart = p.smp.Elapsed()
	stopProgress := p.showProgress(ctx, before)
	if err := p.runScenario(ctx, before); err != nil {
		stopProgress()
		return fmt.Errorf("scenario %s: %w", p.cfg.Scenario, err)
	}
	conv, after, err := p.converge(ctx)
	stopProgress()
	if err != nil {
		return err
	}
	p.res.ConvergenceSeconds = conv
	return p.collect(ctx, before, after)
}

// start launches a Component and samples its process.
func (p *phase) startComponent(ctx context.Context, name, role string, cfg any, env ...string) (*launch.Component, error) {
	c, err := p.l.Start(ctx, p.mode+"-"+name, role, cfg, env...)
	if err != nil {
		return nil, err
	}
	p.smp.Watch(name, c.PID)
	return c, nil
}

func (p *phase) startSim(ctx context.Context) error {
	c := p.cfg
	p.progress("%s: starting the Istiod simulator (%d services × %d endpoints)", p.mode, c.InitialServices(), c.EndpointsPerService)
	sim, err := p.startComponent(ctx, results.CompSim, roles.Sim, roles.SimConfig{
		Services: c.InitialServices(), EndpointsPerService: c.EndpointsPerService, Namespaces: c.Namespaces,
		PortsPerService: c.PortsPerService, Weights: c.Weights, Seed: c.Seed, Debounce: c.Debounce,
	})
	if err != nil {
		return err
	}
	p.sim = sim
	if err := p.refreshTruth(ctx); err != nil {
		return err
	}
	// The workload names services by index: check the simulator still
	// names them the way ServiceKey and ServiceVIP assume.
	for _, s := range p.truth.Services[:min(len(p.truth.Services), 50)] {
		key := "tcp/" + workload.ServiceVIP(s.Index).String() + ":80"
		if _, ok := s.Frontends[key]; !ok {
			return fmt.Errorf("simulator service %d has no frontend %s: its VIP scheme changed (update workload.go)", s.Index, key)
		}
	}
	p.smp.SetServices(len(p.truth.Services))
	return nil
}

// refreshTruth fetches the simulator's expected state.
func (p *phase) refreshTruth(ctx context.Context) error {
	var t gate.Truth
	if err := p.sim.Control.CallTimeout(ctx, time.Minute, "truth", nil, &t); err != nil {
		return err
	}
	p.truth = t
	return nil
}

func (p *phase) startEtcd(ctx context.Context) error {
	if len(p.cfg.EtcdEndpoints) > 0 {
		p.etcdURL = p.cfg.EtcdEndpoints[0]
		return nil
	}
	// The first etcd picks its own free port (and retries if another
	// process takes it first); a restarted one (etcd-wipe) comes back at
	// the same address.
	p.etcdGen++
	p.etcdDir = filepath.Join(p.tmp, fmt.Sprintf("etcd-%s-%d", p.mode, p.etcdGen))
	c, err := p.startComponent(ctx, results.CompEtcd, roles.Etcd, roles.EtcdConfig{ClientURL: p.etcdURL, Dir: p.etcdDir})
	if err != nil {
		return err
	}
	p.etcd = c
	p.etcdURL = c.Ready.Addr
	p.progress("%s: etcd at %s", p.mode, p.etcdURL)
	return nil
}

func (p *phase) startRelays(ctx context.Context) error {
	p.progress("%s: starting %d relay replica(s)", p.mode, p.cfg.RelayReplicas)
	for i := range p.cfg.RelayReplicas {
		r, err := p.startRelay(ctx, i)
		if err != nil {
			return err
		}
		p.relays = append(p.relays, r)
	}
	var worst time.Duration
	for i := range p.relays {
		d, err := p.waitRelaySynced(ctx, i, 5*time.Minute)
		if err != nil {
			return err
		}
		worst = max(worst, d)
	}
	p.res.RelaySyncSeconds = worst.Seconds()
	p.progress("%s: relay(s) synced %d services into etcd in %.2fs", p.mode, len(p.truth.Services), worst.Seconds())
	return nil
}

func (p *phase) startRelay(ctx context.Context, i int) (*launch.Component, error) {
	return p.startComponent(ctx, relayName(i), roles.Relay, roles.RelayConfig{
		Istiod: p.sim.Ready.Addr, Etcd: []string{p.etcdURL}, ID: relayName(i), Cluster: p.cluster,
	})
}

// waitRelaySynced waits for relay i's first complete sync and returns how
// long it took from the relay's start.
func (p *phase) waitRelaySynced(ctx context.Context, i int, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		var st roles.RelayStats
		if err := p.relays[i].Control.CallTimeout(ctx, 10*time.Second, "stats", nil, &st); err != nil {
			return 0, err
		}
		if st.Synced != 0 {
			return time.Duration(st.Synced - st.Started), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("relay %d not synced after %v (sink: %+v)", i, timeout, st.Sink)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

func (p *phase) startNodes(ctx context.Context) error {
	c := p.cfg
	pc := roles.PoolConfig{Nodes: p.nodes, Namespaces: c.Namespaces, PortsPerService: c.PortsPerService}
	role := roles.DirectNodes
	if p.mode == config.ModeRelay {
		role = roles.RelayNodes
		pc.Etcd, pc.Cluster, pc.OnDemand = []string{p.etcdURL}, p.cluster, c.OnDemand
	} else {
		pc.Istiod, pc.AllServices = p.sim.Ready.Addr, c.DirectScope == "all"
	}
	p.progress("%s: starting %d nodes", p.mode, len(p.nodes))
	start := time.Now()
	pool, err := p.startComponent(ctx, results.CompNodes, role, pc, p.poolEnv...)
	if err != nil {
		return err
	}
	p.pool = pool
	if err := p.pool.Control.CallTimeout(ctx, time.Minute, "expect", p.truth, nil); err != nil {
		return err
	}
	res, err := p.waitGate(ctx, max(p.cfg.ConvergeTimeout, 10*time.Minute), "initial sync")
	if err != nil {
		return err
	}
	p.res.Gate = res
	var st roles.PoolStats
	if err := p.pool.Control.Call(ctx, "stats", nil, &st); err != nil {
		return err
	}
	p.res.NodesSyncSeconds = max(0, time.Unix(0, st.LastApply).Sub(start).Seconds())
	cpu, _ := p.smp.Usage(results.CompNodes)
	n := float64(len(p.nodes))
	p.res.PerNode.BootstrapCPUSeconds = cpu / n
	p.res.PerNode.BootstrapBytes = float64(st.BytesReceived) / n
	p.progress("%s: %d nodes in sync after %.1fs (%.3f CPU s and %s received per node)", p.mode, len(p.nodes),
		p.res.NodesSyncSeconds, cpu/n, report.HumanBytes(float64(st.BytesReceived)/n))
	return nil
}

// waitGate polls the correctness check until every node matches the
// truth, or timeout. It reports progress every few seconds.
func (p *phase) waitGate(ctx context.Context, timeout time.Duration, what string) (gate.Result, error) {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for {
		var res gate.Result
		if err := p.pool.Control.CallTimeout(ctx, 2*time.Minute, "check", struct {
			MaxDiffs int `json:"maxDiffs"`
		}{20}, &res); err != nil {
			return res, err
		}
		if res.Mismatched == 0 {
			return res, nil
		}
		if time.Now().After(deadline) {
			return res, &gateError{what: what, res: res}
		}
		if time.Since(last) >= 5*time.Second {
			last = time.Now()
			p.progress("%s: %s: %d of %d nodes not in sync yet", p.mode, what, res.Mismatched, res.Nodes)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return res, err
		}
	}
}

// gateError is a failed correctness gate.
type gateError struct {
	what string
	res  gate.Result
}

func (e *gateError) Error() string {
	msg := fmt.Sprintf("correctness gate failed after %s: %d of %d nodes differ from the simulator's truth; first differences:", e.what, e.res.Mismatched, e.res.Nodes)
	for _, d := range e.res.Diffs {
		msg += "\n  " + d
	}
	return msg
}

// converge waits until every node matches the final truth. It returns the
// time from the scenario's last push to the last datapath write, and the
// counters as they were just before the successful check: the gate dumps
// every node, work that must not count as the scenario's.
func (p *phase) converge(ctx context.Context) (float64, phaseSnapshot, error) {
	if err := p.refreshTruth(ctx); err != nil {
		return 0, phaseSnapshot{}, err
	}
	if err := p.pool.Control.CallTimeout(ctx, time.Minute, "expect", p.truth, nil); err != nil {
		return 0, phaseSnapshot{}, err
	}
	deadline := time.Now().Add(p.cfg.ConvergeTimeout)
	last := time.Now()
	for {
		if err := p.waitQuiet(ctx, 1500*time.Millisecond, time.Until(deadline)); err != nil {
			return 0, phaseSnapshot{}, err
		}
		snap, err := p.snapshot(ctx)
		if err != nil {
			return 0, snap, err
		}
		var res gate.Result
		if err := p.pool.Control.CallTimeout(ctx, 2*time.Minute, "check", struct {
			MaxDiffs int `json:"maxDiffs"`
		}{20}, &res); err != nil {
			return 0, snap, err
		}
		p.res.Gate = res
		if res.Mismatched == 0 {
			p.res.GateOK = true
			conv := 0.0
			if lastPush := snap.sim.LastPush; lastPush != 0 && snap.pool.LastApply > lastPush {
				conv = time.Duration(snap.pool.LastApply - lastPush).Seconds()
			}
			return conv, snap, nil
		}
		p.res.GateOK = false
		if time.Now().After(deadline) {
			return 0, snap, &gateError{what: "the scenario", res: res}
		}
		if time.Since(last) >= 5*time.Second {
			last = time.Now()
			p.progress("%s: %d of %d nodes not converged yet", p.mode, res.Mismatched, res.Nodes)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return 0, snap, err
		}
	}
}

// waitQuiet waits until no node has written its datapath for quiet, or
// timeout passes (then it returns without error: the gate decides).
func (p *phase) waitQuiet(ctx context.Context, quiet, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var st roles.PoolStats
		if err := p.pool.Control.Call(ctx, "stats", nil, &st); err != nil {
			return err
		}
		if time.Since(time.Unix(0, st.LastApply)) >= quiet {
			return nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// snapshot reads every counter of the phase.
func (p *phase) snapshot(ctx context.Context) (phaseSnapshot, error) {
	s := phaseSnapshot{at: time.Now(), cpu: map[string]float64{}}
	if err := p.sim.Control.CallTimeout(ctx, 10*time.Second, "stats", nil, &s.sim); err != nil {
		return s, err
	}
	if err := p.pool.Control.CallTimeout(ctx, 10*time.Second, "stats", nil, &s.pool); err != nil {
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
		}
		s.relays = append(s.relays, st)
	}
	for _, name := range p.smp.Names() {
		s.cpu[name], _ = p.smp.Usage(name)
	}
	return s, nil
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
	}
	dp := func(a, b uint64) float64 { return float64(a-b) / n }
	r.Writes.MapWrites = (after.pool.Updates - before.pool.Updates) + (after.pool.Deletes - before.pool.Deletes)
	r.PerNode.CPUSeconds = (after.cpu[results.CompNodes] - before.cpu[results.CompNodes]) / n
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
	r.Lag = measure.ComputeLag(evs.Events, samples.Samples, func(svc int) int {
		if all {
			return len(p.nodes)
		}
		return holders[svc]
	})
	p.fillStatic(ctx, after)
	return nil
}

// fillStatic records the figures that are states rather than deltas:
// totals, memory, streams, etcd, series.
func (p *phase) fillStatic(ctx context.Context, s phaseSnapshot) {
	r := p.res
	n := float64(len(p.nodes))
	r.Istiod.Streams = s.sim.Streams
	r.Istiod.StreamsTotal = s.sim.Istiod.StreamsTotal
	r.Istiod.BytesTotal = s.sim.Istiod.Bytes
	r.Istiod.Responses = s.sim.Istiod.Responses
	r.Istiod.Pushes = s.sim.Istiod.Pushes
	r.Istiod.Nacks = s.sim.Nacks
	r.Istiod.Violations = s.sim.Violations
	r.PerNode.Entries = float64(s.pool.Entries) / n
	r.PerNode.MemlockBytes = float64(s.pool.MemlockBytes) / n
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

// progress prints one line of progress.
func (p *phase) progress(format string, args ...any) {
	fmt.Fprintf(p.out, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// relayCarry records the counters of relay i's process that is being
// replaced (as its last snapshot, carry included, saw them).
func (p *phase) relayCarry(i int, last roles.RelayStats) {
	for len(p.carry) <= i {
		p.carry = append(p.carry, roles.RelayStats{})
	}
	p.carry[i] = last
}

// removeAll removes a directory the harness made, logging failures.
func (p *phase) removeAll(dir string) {
	if dir == "" {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		p.log.Warn("remove", "dir", dir, "err", err)
	}
}
