package scenario

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/relay/shard"
	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/roles"
)

// runScenario makes the scenario's changes.
func (p *phase) runScenario(ctx context.Context, before phaseSnapshot) error {
	var err error
	switch p.cfg.Scenario {
	case config.ScenarioSteady:
		err = p.churn(ctx, false, p.cfg.Duration)
	case config.ScenarioRolling:
		err = p.churn(ctx, true, p.cfg.Duration)
	case config.ScenarioNodeFailure:
		err = p.nodeFailure(ctx)
	case config.ScenarioScaleUp:
		err = p.scaleUp(ctx)
	case config.ScenarioIstiodRestart:
		err = p.istiodRestart(ctx, before)
	case config.ScenarioRelayKill:
		err = p.relayKill(ctx)
	case config.ScenarioEtcdWipe:
		err = p.etcdWipe(ctx)
	default:
		err = fmt.Errorf("unknown scenario %q", p.cfg.Scenario)
	}
	return err
}

// churn replaces endpoints at the configured rate for d: single endpoints
// of random services, or whole services one after another (rolling).
func (p *phase) churn(ctx context.Context, rolling bool, d time.Duration) error {
	var res roles.ChurnResult
	err := p.sim.Control.CallTimeout(ctx, d+2*time.Minute, "churn",
		roles.ChurnRequest{Rate: p.cfg.ChurnRate, Duration: d, Rolling: rolling, Seed: p.cfg.Seed}, &res)
	if err != nil {
		return err
	}
	c := p.res.Details.Churn
	if c == nil {
		c = &results.Churn{}
		p.res.Details.Churn = c
	}
	c.EndpointsChanged += res.Endpoints
	if rolling {
		c.Rolling, c.ServicesRestarted, c.RollingRestartComplete = true, res.Services, res.Complete
	}
	return nil
}

// nodeFailure removes a share of all endpoints at once (the nodes they ran
// on failed), waits for the nodes to converge, and brings them back after
// half the duration.
func (p *phase) nodeFailure(ctx context.Context) error {
	start := time.Now()
	var removed roles.CountResult
	if err := p.sim.Control.CallTimeout(ctx, time.Minute, "fail", roles.FailRequest{Fraction: p.cfg.FailFraction}, &removed); err != nil {
		return err
	}
	d := &results.NodeFailure{EndpointsRemoved: removed.N}
	p.res.Details.NodeFailure = d
	p.progress("%s: %d endpoints vanished (%.0f %%)", p.mode, removed.N, 100*p.cfg.FailFraction)
	conv, _, err := p.converge(ctx)
	if err != nil {
		return fmt.Errorf("after the failure: %w", err)
	}
	d.FailureConvergenceSeconds = conv
	p.progress("%s: nodes converged on the failure %.3fs after the push", p.mode, conv)
	if err := sleep(ctx, time.Until(start.Add(p.cfg.Duration/2))); err != nil {
		return err
	}
	var restored roles.CountResult
	if err := p.sim.Control.CallTimeout(ctx, time.Minute, "restore", nil, &restored); err != nil {
		return err
	}
	d.EndpointsRestored = restored.N
	p.progress("%s: %d endpoints came back", p.mode, restored.N)
	return nil
}

// scaleUp adds services in batches up to --services, spread over the
// duration.
func (p *phase) scaleUp(ctx context.Context) error {
	missing := p.cfg.Services - p.cfg.InitialServices()
	if missing <= 0 {
		return nil
	}
	batches := int(math.Ceil(float64(missing) / float64(p.cfg.ScaleBatch)))
	interval := p.cfg.Duration / time.Duration(batches)
	var res roles.CountResult
	err := p.sim.Control.CallTimeout(ctx, p.cfg.Duration+5*time.Minute, "scale",
		roles.ScaleRequest{Batch: p.cfg.ScaleBatch, Target: p.cfg.Services, Interval: interval}, &res)
	if err != nil {
		return err
	}
	p.res.Details.ScaleUp = &results.ScaleUp{ServicesAdded: res.N, Batches: batches}
	return nil
}

// istiodRestart restarts the simulated Istiod: same content, new versions
// and nonces. Every client reconnects and receives everything again; an
// identical re-push must write nothing, in etcd or in the maps.
func (p *phase) istiodRestart(ctx context.Context, before phaseSnapshot) error {
	start := time.Now()
	if err := p.sim.Control.CallTimeout(ctx, time.Minute, "restart", nil, nil); err != nil {
		return err
	}
	want := len(p.nodes)
	if p.mode == config.ModeRelay {
		want = len(p.relays)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var st roles.SimStats
		if err := p.sim.Control.CallTimeout(ctx, 10*time.Second, "stats", nil, &st); err != nil {
			return err
		}
		if st.Streams >= want {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after the restart only %d of %d streams came back", st.Streams, want)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	d := &results.IstiodRestart{ReconnectSeconds: time.Since(start).Seconds()}
	p.res.Details.IstiodRestart = d
	// Give every client time to receive and digest the full state.
	after, err := p.settle(ctx, 3*time.Second)
	if err != nil {
		return err
	}
	d.MapWritesAfterRestart = after.pool.Updates + after.pool.Deletes - before.pool.Updates - before.pool.Deletes
	d.IstiodBytesAfterRestart = after.sim.Istiod.Bytes - before.sim.Istiod.Bytes
	d.NodeCPUSecondsPerNode = (after.cpu[results.CompNodes] - before.cpu[results.CompNodes]) / float64(len(p.nodes))
	var puts uint64
	for i := range after.relays {
		puts += after.relays[i].Sink.Puts - before.relays[i].Sink.Puts
	}
	if p.mode == config.ModeRelay {
		d.EtcdPutsAfterRestart = &puts
	}
	p.progress("%s: Istiod restarted; clients back in %.2fs; map writes since: %.0f", p.mode,
		d.ReconnectSeconds, d.MapWritesAfterRestart)
	return p.churn(ctx, false, config.LivenessChurn)
}

// relayKill kills relay replica 0 (SIGKILL) and starts it again. The
// nodes keep their maps and watches meanwhile; the new relay finds etcd
// in step and writes (almost) nothing.
func (p *phase) relayKill(ctx context.Context) error {
	before, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	client, err := etcddial.Dial(etcddial.Options{Endpoints: []string{p.etcdURL}})
	if err != nil {
		return err
	}
	defer client.Close()
	space := keyspace.New(p.cluster)
	st, err := shard.ReadStatus(ctx, client, space, keyspace.DefaultShards)
	if err != nil {
		return err
	}
	var lease string
	for _, m := range st.Members {
		if m.ID == relayName(0) {
			lease = m.Lease
		}
	}
	start := time.Now()
	p.relays[0].Kill()
	p.smp.Gone(relayName(0))
	p.progress("%s: killed %s (pid %d)", p.mode, relayName(0), p.relays[0].PID)
	takeover := make(chan float64, 1)
	go func() { takeover <- waitTakeover(ctx, client, space, lease, start) }()
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	r, err := p.startRelay(ctx, 0)
	if err != nil {
		return err
	}
	p.relayCarry(0, before.relays[0])
	p.relays[0] = r
	if _, err := p.waitRelaySynced(ctx, 0, 2*time.Minute); err != nil {
		return err
	}
	d := &results.RelayKill{RelayResyncSeconds: time.Since(start).Seconds(), TakeoverSeconds: <-takeover}
	p.res.Details.RelayKill = d
	after, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	d.EtcdPutsByNewRelay = after.relays[0].Sink.Puts - before.relays[0].Sink.Puts
	d.MapWritesDuringRecovery = after.pool.Updates + after.pool.Deletes - before.pool.Updates - before.pool.Deletes
	p.progress("%s: every shard led again %.2fs after the kill; relay back and synced after %.2fs; map writes meanwhile: %d", p.mode,
		d.TakeoverSeconds, d.RelayResyncSeconds, d.MapWritesDuringRecovery)
	return p.churn(ctx, false, config.LivenessChurn)
}

// waitTakeover polls the shard elections until every shard is led and
// none by the lease of the killed replica, and returns the seconds since
// start (-1 when ctx ended first or two minutes passed).
func waitTakeover(ctx context.Context, kv clientv3.KV, space keyspace.Space, lease string, start time.Time) float64 {
	for time.Since(start) < 2*time.Minute {
		st, err := shard.ReadTable(ctx, kv, space, keyspace.DefaultShards)
		if err == nil && led(st, lease) {
			return time.Since(start).Seconds()
		}
		if sleep(ctx, 20*time.Millisecond) != nil {
			return -1
		}
	}
	return -1
}

// led reports whether every shard has a leader whose key is not on lease.
func led(t *shard.Table, lease string) bool {
	for _, line := range t.Lines {
		if len(line) == 0 || lease != "" && strings.HasSuffix(line[0].Key, "/"+lease) {
			return false
		}
	}
	return true
}

// etcdWipe kills etcd, throws its data away and starts an empty one at
// the same address. The relay must rebuild it from memory; the nodes must
// keep every datapath entry meanwhile.
func (p *phase) etcdWipe(ctx context.Context) error {
	client, err := etcddial.Dial(etcddial.Options{Endpoints: []string{p.etcdURL}})
	if err != nil {
		return err
	}
	defer client.Close()
	prefix := keyspace.New(p.cluster).Prefix()
	keysBefore, err := countKeys(ctx, client, prefix)
	if err != nil {
		return err
	}
	before, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	p.etcd.Kill()
	p.smp.Gone(results.CompEtcd)
	p.removeAll(p.etcdDir)
	p.progress("%s: killed etcd (pid %d) and deleted its data (%d keys)", p.mode, p.etcd.PID, keysBefore)
	if err := p.startEtcd(ctx); err != nil {
		return err
	}
	up := time.Now()
	deadline := up.Add(2 * time.Minute)
	for {
		n, err := countKeys(ctx, client, prefix)
		if err == nil && n >= keysBefore {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd holds %d of %d keys 2 min after the wipe (%v)", n, keysBefore, err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	d := &results.EtcdWipe{EtcdRebuildSeconds: time.Since(up).Seconds(), EtcdOutageSeconds: time.Since(start).Seconds()}
	p.res.Details.EtcdWipe = d
	// The nodes re-list after the generation changes; let them settle.
	after, err := p.settle(ctx, 2*time.Second)
	if err != nil {
		return err
	}
	d.MapDeletesDuringRecovery = after.pool.Deletes - before.pool.Deletes
	d.MapWritesDuringRecovery = after.pool.Updates + after.pool.Deletes - before.pool.Updates - before.pool.Deletes
	p.progress("%s: etcd rebuilt (%d keys) %.2fs after it came back; map deletes meanwhile: %.0f", p.mode, keysBefore,
		d.EtcdRebuildSeconds, d.MapDeletesDuringRecovery)
	return p.churn(ctx, false, config.LivenessChurn)
}

// countKeys counts the keys under prefix.
func countKeys(ctx context.Context, kv clientv3.KV, prefix string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := kv.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", prefix, err)
	}
	return resp.Count, nil
}
