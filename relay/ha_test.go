package relay

import (
	"context"
	"fmt"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/shard"
)

// testLeaseTTL is the replicas' lease in tests: a killed replica's shards
// are taken over about this long after.
const testLeaseTTL = 2 * time.Second

// replica is one relay of several, on its own etcd client so that a test
// can kill it without cleanup by closing the client.
type replica struct {
	*Relay
	id     string
	client *clientv3.Client
	run    *testenv.Running
}

func (w *world) startReplica(id string) *replica {
	w.t.Helper()
	c, err := embedetcd.NewClient(w.etcd.Endpoints())
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { c.Close() })
	r, err := New(c, Options{
		Istiod:      w.sim.Addr(),
		RelayID:     id,
		SyncTimeout: 2 * time.Second,
		Sink:        etcdsink.Options{Window: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond, RequestTimeout: time.Second},
		HA:          &HA{Client: c, LeaseTTL: testLeaseTTL, Pod: id + "-pod"},
		Logger:      testenv.Logger(w.t, "relay", id),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return &replica{Relay: r, id: id, client: c, run: testenv.Run(w.t, r.Run)}
}

// stop stops a replica cleanly: it revokes its lease on the way out.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	if err := r.run.Stop(); err != nil {
		t.Errorf("%s: Run = %v", r.id, err)
	}
}

// kill stops a replica the way kill -9 does as far as etcd can tell: its
// connection goes away, nothing is revoked, its lease expires.
func (r *replica) kill() {
	r.client.Close()
	r.run.Stop() // whatever it returns: its etcd client is gone
}

// settledHA checks that every shard is led by exactly one of rs, none
// holds more than ⌈shards/len(rs)⌉, every shard is taken over (its marker
// current and naming its leader), and etcd's election table agrees.
func (w *world) settledHA(rs ...*replica) error {
	const shards = keyspace.DefaultShards
	most := (shards + len(rs) - 1) / len(rs)
	owner := map[int]string{}
	for _, r := range rs {
		if ok, why := r.Ready(); !ok {
			return fmt.Errorf("%s not ready: %s", r.id, why)
		}
		held := r.Membership().Held()
		if len(held) > most {
			return fmt.Errorf("%s leads %d shards, more than %d", r.id, len(held), most)
		}
		for _, s := range held {
			if o, dup := owner[s]; dup {
				return fmt.Errorf("shard %d led by %s and %s", s, o, r.id)
			}
			owner[s] = r.id
		}
		if n := len(r.ShardStats().Held); n != len(held) {
			return fmt.Errorf("%s leads %d shards, writes %d", r.id, len(held), n)
		}
	}
	if len(owner) != shards {
		return fmt.Errorf("%d of %d shards led", len(owner), shards)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	table, err := shard.ReadTable(ctx, w.client, w.space, shards)
	if err != nil {
		return err
	}
	for s := range shards {
		if table.Leader(s) != owner[s] {
			return fmt.Errorf("shard %d: etcd says %q leads, replicas say %q", s, table.Leader(s), owner[s])
		}
		resp, err := w.client.Get(ctx, w.space.Synced(s))
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("synced/%d missing", s)
		}
		m, err := keyspace.ParseMarker(resp.Kvs[0].Value)
		if err != nil || m.Relay != owner[s] {
			return fmt.Errorf("synced/%d: %+v %v, want written by %s", s, m, err, owner[s])
		}
	}
	return nil
}

// deposedShards sums the shards rs lost to another leader.
func deposedShards(rs ...*replica) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Membership().Stats().Deposed
	}
	return n
}

func fencedOps(rs ...*replica) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.ShardStats().FencedOps
	}
	return n
}

// TestReplicasSplitShards: three replicas share 16 shards evenly; every
// shard's services and marker are written by its leader alone (no write
// refused by a fence in a steady run, with churn), and etcd matches the
// simulator.
func TestReplicasSplitShards(t *testing.T) {
	if testing.Short() {
		t.Skip("three replicas with elections; skipped with -short")
	}
	w := newWorld(t, istiodsim.Options{Services: 80, EndpointsPerService: 3, Namespaces: 4}, true)
	rs := []*replica{w.startReplica("relay-0"), w.startReplica("relay-1"), w.startReplica("relay-2")}
	testenv.Eventually(t, "16 shards split over 3 replicas", func() error { return w.settledHA(rs...) })
	testenv.Eventually(t, "etcd matches the simulator", w.matchTruth)
	// Shards handed off while the replicas first split them may have
	// refused writes in flight (their leader giving them up): that is the
	// fence doing its job, not a steady run. Only what follows counts.
	fenced0, deposed0 := fencedOps(rs...), deposedShards(rs...)
	t.Logf("while the shards were first split: %d writes refused by a fence, %d shards deposed", fenced0, deposed0)
	for i := range 20 {
		if err := w.sim.ChurnEndpoints(i*3%80, 1); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, "churn reaches etcd", w.matchTruth)
	if err := w.settledHA(rs...); err != nil {
		t.Errorf("after churn: %v", err)
	}
	if n := fencedOps(rs...) - fenced0; n != 0 {
		t.Errorf("%d writes refused by a fence in a steady run", n)
	}
	if n := deposedShards(rs...) - deposed0; n != 0 {
		t.Errorf("%d shards deposed in a steady run", n)
	}
	if n := w.sim.Streams(); n != 3 {
		t.Errorf("Istiod streams %d, want one per replica", n)
	}
	// EDS is split: each replica subscribes the assignments of its own
	// shards' services only, every one by exactly one replica (once a
	// lease TTL has passed since the last hand-off: a shard's former
	// leader keeps its EDS that long).
	clusters := 0 // one EDS cluster per service port (no subsets)
	for _, svc := range w.sim.Truth() {
		clusters += len(svc.Ports)
	}
	testenv.Eventually(t, "EDS split between the replicas", func() error {
		total := 0
		for _, r := range rs {
			n := r.Relay.sotwClient.Stats().Subscribed[resourcev3.EndpointType]
			if n == 0 || n >= clusters {
				return fmt.Errorf("%s subscribes %d EDS names of %d clusters", r.id, n, clusters)
			}
			total += n
		}
		if total != clusters {
			return fmt.Errorf("the replicas subscribe %d EDS names in all, want each of the %d EDS clusters once", total, clusters)
		}
		return nil
	})
}

// TestKilledReplicaTakenOver: a replica killed during churn loses its
// shards when its lease expires; the others lead them again, etcd
// converges to the simulator's state, and no update is lost.
func TestKilledReplicaTakenOver(t *testing.T) {
	if testing.Short() {
		t.Skip("three replicas with elections; skipped with -short")
	}
	w := newWorld(t, istiodsim.Options{Services: 80, EndpointsPerService: 3, Namespaces: 4}, true)
	rs := []*replica{w.startReplica("relay-0"), w.startReplica("relay-1"), w.startReplica("relay-2")}
	testenv.Eventually(t, "settled", func() error { return w.settledHA(rs...) })
	victim := rs[0].Membership().Held()

	churned := make(chan error, 1)
	go func() { // bounded churn across the kill: 40 changes over ~2 s
		for i := range 40 {
			if err := w.sim.ChurnEndpoints(i*7%80, 1); err != nil {
				churned <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		churned <- nil
	}()
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	rs[0].kill()
	testenv.Eventually(t, "survivors lead every shard", func() error { return w.settledHA(rs[1:]...) })
	took := time.Since(killed)
	if err := <-churned; err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "etcd converges to the simulator", w.matchTruth)
	t.Logf("%d shards of the killed replica led and synced again %v after the kill (lease TTL %v)", len(victim), took.Round(10*time.Millisecond), testLeaseTTL)
	if n := fencedOps(rs[1:]...); n != 0 {
		t.Errorf("survivors had %d writes refused", n)
	}
}

// TestRollingRestartWritesNoServiceValue: restarting every replica, one
// after the other, against an unchanged upstream hands shards back and
// forth but writes no service value or VIP entry: takeovers write markers
// only.
func TestRollingRestartWritesNoServiceValue(t *testing.T) {
	if testing.Short() {
		t.Skip("three replicas with elections; skipped with -short")
	}
	w := newWorld(t, istiodsim.Options{Services: 60, EndpointsPerService: 3, Namespaces: 3}, true)
	ids := []string{"relay-0", "relay-1", "relay-2"}
	rs := []*replica{w.startReplica(ids[0]), w.startReplica(ids[1]), w.startReplica(ids[2])}
	testenv.Eventually(t, "settled", func() error { return w.settledHA(rs...) })
	testenv.Eventually(t, "etcd matches the simulator", w.matchTruth)
	before := w.serviceKeys()
	if len(before) == 0 {
		t.Fatal("no service keys")
	}
	for i := range rs {
		rs[i].stop(t)
		testenv.Eventually(t, "the others take over", func() error {
			var others []*replica
			for j, r := range rs {
				if j != i {
					others = append(others, r)
				}
			}
			return w.settledHA(others...)
		})
		rs[i] = w.startReplica(ids[i])
		testenv.Eventually(t, "rebalanced after the restart of "+ids[i], func() error { return w.settledHA(rs...) })
	}
	after := w.serviceKeys()
	for k, rev := range after {
		if before[k] != rev {
			t.Errorf("%s rewritten (mod revision %d -> %d)", k, before[k], rev)
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d service keys before, %d after", len(before), len(after))
	}
	if n := fencedOps(rs...); n != 0 {
		t.Errorf("%d writes refused by a fence", n)
	}
}

// TestEtcdWipedReplicasRepopulate: etcd restarted empty under three
// replicas. Their leases are gone with it: they join again, win the
// shards again, and write everything back under a new generation.
func TestEtcdWipedReplicasRepopulate(t *testing.T) {
	if testing.Short() {
		t.Skip("three replicas with elections; skipped with -short")
	}
	w := newWorld(t, istiodsim.Options{Services: 80, EndpointsPerService: 3, Namespaces: 4}, true)
	rs := []*replica{w.startReplica("relay-0"), w.startReplica("relay-1"), w.startReplica("relay-2")}
	testenv.Eventually(t, "settled", func() error { return w.settledHA(rs...) })
	testenv.Eventually(t, "etcd matches the simulator", w.matchTruth)
	gen := w.generation()

	w.etcd.Close()
	wiped := time.Now()
	w.etcd = testenv.StartEtcd(t, embedetcd.Options{ClientURL: w.etcdOp.ClientURL}) // same port, no data
	testenv.Eventually(t, "repopulated under a new generation", func() error {
		if g := w.generation(); g == "" || g == gen {
			return fmt.Errorf("generation %q (was %q)", g, gen)
		}
		if err := w.settledHA(rs...); err != nil {
			return err
		}
		return w.matchTruth()
	})
	t.Logf("80 services back %v after etcd was wiped (lease TTL %v)", time.Since(wiped).Round(10*time.Millisecond), testLeaseTTL)
	for s := range keyspace.DefaultShards {
		resp, err := w.client.Get(context.Background(), w.space.Synced(s))
		if err != nil || len(resp.Kvs) == 0 {
			t.Fatalf("synced/%d: %v", s, err)
		}
		if m, err := keyspace.ParseMarker(resp.Kvs[0].Value); err != nil || m.Generation != w.generation() {
			t.Errorf("synced/%d: %+v %v, want the new generation", s, m, err)
		}
	}
}

// generation is etcd's generation id, "" when absent.
func (w *world) generation() string {
	w.t.Helper()
	resp, err := w.client.Get(context.Background(), w.space.Generation())
	if err != nil {
		w.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// TestSyncedMeansShardsReady: with shard leadership, Synced closes only
// once the replica's shard readiness holds (every shard led, every shard
// this replica leads written), for the first replica and for one joining
// it: the sink's own Synced closes once the shards taken over so far are
// written, which can be the first of several rounds of takeovers.
func TestSyncedMeansShardsReady(t *testing.T) {
	if testing.Short() {
		t.Skip("two replicas with elections; skipped with -short")
	}
	w := newWorld(t, istiodsim.Options{Services: 80, EndpointsPerService: 3, Namespaces: 4}, true)
	atSynced := func(r *replica) (ready bool, why string, led int) {
		t.Helper()
		select {
		case <-r.Synced():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: Synced not closed after 30 s", r.id)
		}
		ready, why = r.haReady()
		return ready, why, len(r.Membership().Held())
	}
	a := w.startReplica("relay-0")
	if ready, why, led := atSynced(a); !ready || led != keyspace.DefaultShards {
		t.Errorf("relay-0 synced leading %d shards, ready %v (%s); want all %d, ready", led, ready, why, keyspace.DefaultShards)
	}
	b := w.startReplica("relay-1")
	if ready, why, led := atSynced(b); !ready || led == 0 {
		t.Errorf("relay-1 synced leading %d shards, ready %v (%s); want some, ready", led, ready, why)
	}
	testenv.Eventually(t, "16 shards split over 2 replicas", func() error { return w.settledHA(a, b) })
}
