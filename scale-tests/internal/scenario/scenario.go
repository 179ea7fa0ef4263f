package scenario

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/relay/shard"
	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
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

// failoverTail is how long the failover window (its lag row) lasts after
// the takeover is complete (the new leaders' synced markers written).
const failoverTail = 3 * time.Second

// relayKillTiming returns when relay-kill kills a leader after the churn
// started (a quarter of --duration, 2 to 10 s) and how long the churn
// lasts: --duration, at least long enough to cover the takeover (lease
// TTL + 2 s), the failover window and then the liveness churn the other
// scenarios end with (in which the victim restarts).
func relayKillTiming(duration, leaseTTL time.Duration) (killAfter, churn time.Duration) {
	killAfter = min(max(duration/4, 2*time.Second), 10*time.Second)
	return killAfter, max(duration, killAfter+leaseTTL+2*time.Second+failoverTail+config.LivenessChurn)
}

// relayKill churns and, mid-churn, kills the replica leading the most
// shards (SIGKILL, by PID). It measures how long the others take to lead
// its shards and to write their synced markers (each, and all), and the
// Istiod streams meanwhile; it starts the victim again after the failover
// window. collect measures the lag of the changes pushed before, in and
// after that window.
func (p *phase) relayKill(ctx context.Context) error {
	client, err := etcddial.Dial(etcddial.Options{Endpoints: []string{p.etcdURL}})
	if err != nil {
		return err
	}
	defer client.Close()
	space := keyspace.New(p.cluster)
	leaseTTL := shard.DefaultLeaseTTL
	killAfter, churnFor := relayKillTiming(p.cfg.Duration, leaseTTL)

	churnCtx, stopChurn := context.WithCancel(ctx)
	churned := make(chan error, 1)
	go func() { churned <- p.churn(churnCtx, false, churnFor) }()
	churnRunning := true
	defer func() {
		stopChurn()
		if churnRunning {
			<-churned
		}
	}()
	churnStart := time.Now()
	if err := sleep(ctx, killAfter); err != nil {
		return err
	}

	t, err := shard.ReadTable(ctx, client, space, keyspace.DefaultShards)
	if err != nil {
		return err
	}
	victim, ok := pickLeader(t, space)
	if !ok {
		return fmt.Errorf("no shard is led %v into the churn", killAfter)
	}
	vi := -1
	for i := range p.relays {
		if relayName(i) == victim.ID {
			vi = i
		}
	}
	if vi < 0 {
		return fmt.Errorf("shard leader %q is not one of this run's replicas", victim.ID)
	}
	last, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	p.relays[vi].Kill()
	p.smp.Gone(victim.ID)
	d := &results.RelayKill{Victim: victim.ID, VictimShards: victim.Shards, LeaseTTLSeconds: leaseTTL.Seconds(),
		KillAfterSeconds: start.Sub(churnStart).Seconds(), TakeoverSeconds: -1, ChurnFrom: churnStart.UnixNano(), FailoverFrom: start.UnixNano()}
	p.res.Details.RelayKill = d
	p.progress("%s: killed shard leader %s (pid %d, shards %v) %.1fs into the churn", p.mode, victim.ID,
		p.relays[vi].PID, victim.Shards, d.KillAfterSeconds)

	killRev, err := revision(ctx, client)
	if err != nil {
		return err
	}
	if err := p.followTakeover(ctx, client, newTakeover(victim, space, start, killRev), d); err != nil {
		return err
	}
	if err := sleep(ctx, failoverTail); err != nil {
		return err
	}
	d.FailoverTo = time.Now().UnixNano()

	restart := time.Now()
	r, err := p.startRelay(ctx, vi)
	if err != nil {
		return err
	}
	p.relayCarry(vi, last.relays[vi])
	p.relays[vi] = r
	if _, err := p.waitRelaySynced(ctx, vi, 2*time.Minute); err != nil {
		return err
	}
	d.RelayResyncSeconds = time.Since(restart).Seconds()
	p.progress("%s: %s back and synced %.2fs after its restart", p.mode, victim.ID, d.RelayResyncSeconds)

	churnRunning = false
	if err := <-churned; err != nil {
		return fmt.Errorf("churn: %w", err)
	}
	d.ChurnTo = time.Now().UnixNano()
	end, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	for i, rs := range end.relays {
		held := []int{}
		for _, h := range rs.Shards.Held {
			held = append(held, h.Shard)
		}
		d.Replicas = append(d.Replicas, results.ReplicaShards{ID: relayName(i), Held: held,
			Takeovers: rs.Shards.Takeovers, FencedOps: rs.Shards.FencedOps})
	}
	return nil
}

// followTakeover polls the shard elections and the synced markers until
// every shard of tk's victim is led by another replica (d.TakeoverSeconds,
// with the load average and the Istiod streams then) and its new leader
// has written its synced marker (d.SyncedSeconds), for two minutes at
// most.
func (p *phase) followTakeover(ctx context.Context, client clientv3.KV, tk *takeover, d *results.RelayKill) error {
	d.SyncedSeconds = -1
	for time.Since(tk.start) < 2*time.Minute && d.SyncedSeconds < 0 {
		if d.TakeoverSeconds < 0 {
			if t, err := shard.ReadTable(ctx, client, tk.space, keyspace.DefaultShards); err == nil && tk.observe(t, time.Now()) {
				d.TakeoverSeconds = time.Since(tk.start).Seconds()
				d.LoadAverage = measure.LoadAverage()
				var st roles.SimStats
				if err := p.sim.Control.CallTimeout(ctx, 10*time.Second, "stats", nil, &st); err != nil {
					return err
				}
				d.StreamsDuringFailover = st.Streams
				p.progress("%s: %s's %d shards led by others %.2fs after the kill (lease TTL %.0fs; load average %.2f); %d Istiod streams", p.mode,
					d.Victim, len(d.VictimShards), d.TakeoverSeconds, d.LeaseTTLSeconds, d.LoadAverage[0], st.Streams)
			}
		}
		if m, err := readMarkers(ctx, client, tk.space); err == nil && tk.observeSynced(m, time.Now()) {
			d.SyncedSeconds = time.Since(tk.start).Seconds()
			p.progress("%s: their new leaders wrote their synced markers %.2fs after the kill", p.mode, d.SyncedSeconds)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	d.Shards = tk.shards()
	if d.SyncedSeconds < 0 {
		return fmt.Errorf("%s's %d shards not all led by others and synced 2 min after the kill: %+v", d.Victim, len(d.VictimShards), d.Shards)
	}
	return nil
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
	space := keyspace.New(p.cluster)
	keysBefore, err := countData(ctx, client, space)
	if err != nil {
		return err
	}
	genBefore, err := getValue(ctx, client, space.Generation())
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
	p.progress("%s: killed etcd (pid %d) and deleted its data (%d service, VIP and synced keys)", p.mode, p.etcd.PID, keysBefore)
	if err := p.startEtcd(ctx); err != nil {
		return err
	}
	up := time.Now()
	deadline := up.Add(2 * time.Minute)
	for {
		n, err := countData(ctx, client, space)
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
	d := &results.EtcdWipe{EtcdRebuildSeconds: time.Since(up).Seconds(), EtcdOutageSeconds: time.Since(start).Seconds(),
		Services: len(p.truth.Services), LoadAverage: measure.LoadAverage()}
	p.res.Details.EtcdWipe = d
	gen, err := getValue(ctx, client, space.Generation())
	if err != nil {
		return err
	}
	d.NewGeneration = gen != nil && !bytes.Equal(gen, genBefore)
	// The nodes re-list after the generation changes; let them settle.
	after, err := p.settle(ctx, 2*time.Second)
	if err != nil {
		return err
	}
	d.MapDeletesDuringRecovery = after.pool.Deletes - before.pool.Deletes
	d.MapDeletesByMap = map[string]uint64{}
	for name, n := range after.pool.DeletesByMap {
		d.MapDeletesByMap[name] = n - before.pool.DeletesByMap[name]
	}
	d.MapWritesDuringRecovery = after.pool.Updates + after.pool.Deletes - before.pool.Updates - before.pool.Deletes
	p.progress("%s: etcd rebuilt (%d keys, new generation: %v) %.2fs after it came back (load average %.2f); map deletes meanwhile: %d", p.mode,
		keysBefore, d.NewGeneration, d.EtcdRebuildSeconds, d.LoadAverage[0], d.MapDeletesDuringRecovery)
	return p.churn(ctx, false, config.LivenessChurn)
}

// countData counts the keys the relays rebuild after an etcd loss:
// services/, vips/ and synced/ (membership and election keys come back
// on sessions, in numbers that depend on the campaigns).
func countData(ctx context.Context, kv clientv3.KV, space keyspace.Space) (int64, error) {
	var n int64
	for _, prefix := range []string{space.ServicesPrefix(), space.VIPsPrefix(), space.SyncedPrefix()} {
		c, err := countKeys(ctx, kv, prefix)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// revision returns etcd's current revision.
func revision(ctx context.Context, kv clientv3.KV) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := kv.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read the revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// readMarkers reads every synced/<shard> marker: its writer and
// revision. Markers that do not parse are left out.
func readMarkers(ctx context.Context, kv clientv3.KV, space keyspace.Space) (map[int]markerWrite, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := kv.Get(ctx, space.SyncedPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", space.SyncedPrefix(), err)
	}
	out := map[int]markerWrite{}
	for _, e := range resp.Kvs {
		s, ok := space.ParseSynced(string(e.Key))
		if !ok {
			continue
		}
		if m, err := keyspace.ParseMarker(e.Value); err == nil {
			out[s] = markerWrite{Relay: m.Relay, ModRevision: e.ModRevision}
		}
	}
	return out, nil
}

// getValue returns the value of key, nil when it is absent.
func getValue(ctx context.Context, kv clientv3.KV, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := kv.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
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
