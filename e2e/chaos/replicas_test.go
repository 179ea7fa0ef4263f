package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/shard"
)

// replicaLeaseTTL is the relay replicas' lease: a dead or paused
// replica's shards are taken over about this long after it stopped.
const replicaLeaseTTL = 2 * time.Second

// startReplica runs relay replica id (shard elections, fenced writes;
// cfg may widen its coalescing window) and waits until it is ready.
func (c *cluster) startReplica(id string, cfg relayConfig) *child {
	c.t.Helper()
	cfg.Etcd, cfg.Istiod, cfg.ID, cfg.LeaseTTL = c.etcdURL, c.sim.Addr(), id, replicaLeaseTTL
	return startChild(c.t, id, "relay", cfg)
}

// newReplicatedCluster is a cluster of the current scale whose relay is
// three replicas sharing the shards (relay-0 configured by first), with
// its agents started and converged.
func newReplicatedCluster(t *testing.T, first relayConfig) (*cluster, scale, []*child) {
	t.Helper()
	s := currentScale()
	c := newRelaylessCluster(t, simOptions(s))
	rs := []*child{c.startReplica("relay-0", first), c.startReplica("relay-1", relayConfig{}), c.startReplica("relay-2", relayConfig{})}
	testenv.Eventually(t, "three replicas share the shards", func() error { _, err := c.ledBy(rs...); return err })
	c.addScaledAgents(s)
	return c, s, rs
}

// ledBy checks that the replicas rs lead every shard between them, at most
// ⌈shards/len(rs)⌉ each, and that every shard is taken over (its synced
// marker names its leader); it returns the shards each leads.
func (c *cluster) ledBy(rs ...*child) (map[string][]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := shard.ReadStatus(ctx, c.client, space, keyspace.DefaultShards)
	if err != nil {
		return nil, err
	}
	led := map[string][]int{}
	for _, s := range st.Shards {
		if !slices.ContainsFunc(rs, func(r *child) bool { return r.name == s.Leader }) {
			return nil, fmt.Errorf("shard %d led by %q", s.Shard, s.Leader)
		}
		if s.Marker == nil || s.Marker.Relay != s.Leader {
			return nil, fmt.Errorf("shard %d led by %s, marker %+v", s.Shard, s.Leader, s.Marker)
		}
		led[s.Leader] = append(led[s.Leader], s.Shard)
	}
	most := (keyspace.DefaultShards + len(rs) - 1) / len(rs)
	for id, shards := range led {
		if len(shards) > most {
			return nil, fmt.Errorf("%s leads %d shards, more than %d", id, len(shards), most)
		}
	}
	return led, nil
}

// TestRelayLeaderKilledDuringRollingRestart: three relay replicas share
// the shards; the leader of shard 0 gets SIGKILL while the two others
// restart one by one against an unchanged upstream, then it is started
// again (as its Deployment would). Asserts: the killed leader's shards
// are taken over (time reported), no service key is written, agents keep
// every frontend.
func TestRelayLeaderKilledDuringRollingRestart(t *testing.T) {
	r := &result{Injected: "shard 0's leader `kill -9` while the 2 other relay replicas restart one by one (unchanged upstream), then it restarts"}
	report(t, r)
	c, _, rs := newReplicatedCluster(t, relayConfig{})
	c.settle(500 * time.Millisecond)
	led, err := c.ledBy(rs...)
	if err != nil {
		t.Fatal(err)
	}
	v := slices.IndexFunc(rs, func(r *child) bool { return slices.Contains(led[r.name], 0) })
	victim := rs[v]
	orphans := led[victim.name]
	g := c.guard()
	w := c.countWrites()

	victim.kill()
	killed := time.Now()
	took := make(chan time.Duration, 1)
	go func() { // how long until the victim's shards are led and taken over by another
		for time.Since(killed) < testenv.Timeout {
			if c.takenOver(orphans, victim.name) == nil {
				took <- time.Since(killed)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(took)
	}()
	for i, other := range rs {
		if i != v {
			other.stop()
			rs[i] = c.startReplica(other.name, relayConfig{})
		}
	}
	takeover, ok := <-took
	if !ok {
		t.Fatalf("the killed leader's shards %v not taken over after %v: %v", orphans, testenv.Timeout, c.takenOver(orphans, victim.name))
	}
	rs[v] = c.startReplica(victim.name, relayConfig{})
	testenv.Eventually(t, "three replicas share the shards again", func() error { _, err := c.ledBy(rs...); return err })
	c.settle(500 * time.Millisecond)
	n := w.expectNone(t, "by the takeover and the restarts (unchanged upstream)")
	c.converge("agents hold the simulator's truth")
	g.finish(r)
	c.checkNoDeletes()
	r.Converge = takeover
	r.Writes = fmt.Sprintf("%d keys", n)
	r.Figures = fmt.Sprintf("takeover of the killed leader's %d shards %v after `kill -9` (lease TTL %v)", len(orphans), takeover.Round(time.Millisecond), replicaLeaseTTL)
}

// takenOver checks that shards are led by a relay other than gone and that
// their markers name their leader.
func (c *cluster) takenOver(shards []int, gone string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := shard.ReadStatus(ctx, c.client, space, keyspace.DefaultShards)
	if err != nil {
		return err
	}
	for _, s := range shards {
		ss := st.Shards[s]
		if ss.Leader == "" || ss.Leader == gone || ss.Marker == nil || ss.Marker.Relay != ss.Leader {
			return fmt.Errorf("shard %d led by %q, marker %+v", s, ss.Leader, ss.Marker)
		}
	}
	return nil
}

// TestRelayPausedPastLease: relay-0 (a wide coalescing window) holds a
// change of its shards' services when it gets SIGSTOP; its lease expires,
// the other replicas take its shards over and write a newer change; then
// SIGCONT. Asserts: none of its writes land (no key of those services
// written after it resumed, etcd holds the newer content), the shards are
// balanced again, agents keep every frontend.
func TestRelayPausedPastLease(t *testing.T) {
	r := &result{Injected: "shard leader (1.5 s coalescing window, a change pending) SIGSTOP past its 2 s lease; the new leader writes a newer change; SIGCONT"}
	report(t, r)
	c, s, rs := newReplicatedCluster(t, relayConfig{Window: 1500 * time.Millisecond, MaxDelay: 3 * time.Second})
	c.settle(500 * time.Millisecond)
	paused := rs[0]
	led, err := c.ledBy(rs...)
	if err != nil {
		t.Fatal(err)
	}
	var victims []int // declared services of relay-0's shards
	for i := range s.Agents {
		for _, svc := range declaredBy(i, s) {
			k := c.keys([]int{svc})[0]
			if slices.Contains(led[paused.name], keyspace.Shard(k, keyspace.DefaultShards)) && !slices.Contains(victims, svc) && len(victims) < 6 {
				victims = append(victims, svc)
			}
		}
	}
	if len(victims) == 0 {
		t.Fatalf("no declared service in %s's shards %v", paused.name, led[paused.name])
	}
	g := c.guard()
	churn := func() {
		for _, i := range victims {
			if err := c.sim.ChurnEndpoints(i, 1); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The first change after quiet is written at once, the second waits
	// for the end of relay-0's window: it is pending when relay-0 stops.
	churn()
	time.Sleep(200 * time.Millisecond)
	churn()
	time.Sleep(300 * time.Millisecond)
	paused.signal(syscall.SIGSTOP)
	stopped := time.Now()
	testenv.Eventually(t, "the others take the paused replica's shards over", func() error { return c.takenOver(led[paused.name], paused.name) })
	takeover := time.Since(stopped)
	churn() // newer content, written by the new leaders
	c.converge("agents hold the new leaders' content")
	rev, err := c.client.Get(context.Background(), space.Generation())
	if err != nil {
		t.Fatal(err)
	}
	paused.signal(syscall.SIGCONT)
	pausedFor := time.Since(stopped)
	testenv.Eventually(t, "balanced again after the paused replica resumed", func() error {
		led, err := c.ledBy(rs...)
		if err == nil && len(led[paused.name]) == 0 {
			return fmt.Errorf("%s leads no shard", paused.name)
		}
		return err
	})
	c.settle(500 * time.Millisecond)
	c.converge("agents hold the new leaders' content after the paused replica resumed")
	landed := 0
	for _, k := range c.keys(victims) {
		resp, err := c.client.Get(context.Background(), space.ServicePrefix(k), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if kv.ModRevision > rev.Header.Revision {
				landed++
				t.Errorf("%s written after the paused replica resumed (revision %d > %d)", kv.Key, kv.ModRevision, rev.Header.Revision)
			}
		}
	}
	var res relayResult
	if raw := paused.stop(); raw == nil || json.Unmarshal(raw, &res) != nil {
		t.Fatalf("%s reported no result: %s", paused.name, raw)
	}
	g.finish(r)
	c.checkNoDeletes()
	r.Converge = takeover
	r.Writes = fmt.Sprintf("%d keys by the resumed leader", landed)
	r.Figures = fmt.Sprintf("paused %v (lease TTL %v), %d services changed 3 times; resumed leader: %d fenced ops, %d shards deposed",
		pausedFor.Round(time.Millisecond), replicaLeaseTTL, len(victims), res.Shards.FencedOps, res.Deposed)
}
