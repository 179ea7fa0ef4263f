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

	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
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
	// cpu is each component's cumulative CPU seconds, by component name.
	cpu map[string]float64
}

func relayName(i int) string { return "relay-" + strconv.Itoa(i) }

// Run runs the phase and fills p.res. A component that dies ends it with
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
		return cause // a component died: that is the error to report
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
	traceCtx, stopTrace := context.WithCancel(ctx)
	go p.smp.Trace(traceCtx, cpuTraceInterval)
	if err := p.runScenario(ctx, before); err != nil {
		stopTrace()
		stopProgress()
		return fmt.Errorf("scenario %s: %w", p.cfg.Scenario, err)
	}
	conv, after, err := p.converge(ctx)
	stopTrace()
	stopProgress()
	var ge *gateError
	if err != nil && !errors.As(err, &ge) {
		return err
	}
	// A failed gate still gets the figures of the scenario window, for
	// diagnosis: the mode is marked failed, so no target or ratio is
	// judged on them.
	p.res.ConvergenceSeconds = conv
	if cerr := p.collect(ctx, before, after); cerr != nil {
		return errors.Join(err, cerr)
	}
	return err
}

// cpuTraceInterval is how often the components' CPU is read during the
// scenario, for the CPU of the largest fan-out (measure.Fanout).
const cpuTraceInterval = 5 * time.Millisecond

// start launches a component and samples its process.
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
	c, err := p.startComponent(ctx, results.CompEtcd, roles.Etcd, roles.EtcdConfig{ClientURL: p.etcdURL, Dir: p.etcdDir,
		GOGC: roles.EtcdGOGC, MemoryLimit: roles.EtcdMemoryLimit})
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
	// A replica reports its sync once the shards it leads are written; the
	// nodes start against a completely synced etcd (every shard's marker
	// current), which is when the relays' initial sync is done.
	d, err := p.waitEtcdComplete(ctx, 5*time.Minute)
	if err != nil {
		return err
	}
	worst = max(worst, d)
	p.res.RelaySyncSeconds = worst.Seconds()
	p.progress("%s: relay(s) synced %d services into etcd in %.2fs", p.mode, len(p.truth.Services), worst.Seconds())
	return nil
}

func (p *phase) startRelay(ctx context.Context, i int) (*launch.Component, error) {
	return p.startComponent(ctx, relayName(i), roles.Relay, roles.RelayConfig{
		Istiod: p.sim.Ready.Addr, Etcd: []string{p.etcdURL}, ID: relayName(i), Cluster: p.cluster,
		Mode: relayMode(p.cfg.API()),
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

// waitEtcdComplete waits until etcd is completely synced (generation and
// every shard's synced marker of it, docs/contract.md) and returns how long
// that took from the start of the first relay.
func (p *phase) waitEtcdComplete(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	var st roles.RelayStats
	if err := p.relays[0].Control.CallTimeout(ctx, 10*time.Second, "stats", nil, &st); err != nil {
		return 0, err
	}
	client, err := etcddial.Dial(etcddial.Options{Endpoints: []string{p.etcdURL}})
	if err != nil {
		return 0, err
	}
	defer client.Close()
	src := etcdsource.New(client, etcdsource.Options{Cluster: p.cluster})
	deadline := time.Now().Add(timeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		complete, why, err := src.Complete(rctx)
		cancel()
		if err == nil && complete {
			return time.Since(time.Unix(0, st.Started)), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("etcd not completely synced after %v: %s (err %v)", timeout, why, err)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
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
		pc.Istiod, pc.AllServices, pc.XDSAPI = p.sim.Ready.Addr, c.DirectScope == "all", c.API()
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
	quiet, err := p.waitQuietCPU(ctx)
	if err != nil {
		return err
	}
	p.res.QuietSeconds = quiet.Seconds()
	cpu, _ := p.smp.Usage(results.CompNodes)
	n := float64(len(p.nodes))
	p.res.PerNode.BootstrapCPUSeconds = cpu / n
	p.res.PerNode.BootstrapBytes = float64(st.BytesReceived) / n
	p.progress("%s: %d nodes in sync after %.1fs (%.3f CPU s and %s received per node)", p.mode, len(p.nodes),
		p.res.NodesSyncSeconds, cpu/n, report.HumanBytes(float64(st.BytesReceived)/n))
	return nil
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
