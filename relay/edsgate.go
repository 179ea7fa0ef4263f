package relay

import (
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/translate"
	"github.com/meshrelay/meshrelay/relay/xds/sotw"
)

// wantEDS is the upstream client's EDSFilter with Options.HA: a service's
// endpoint assignments are subscribed only while this replica leads the
// service's shard (CDS, LDS and RDS stay whole). A cluster of no service is
// always subscribed.
func (r *Relay) wantEDS(name string, c *clusterv3.Cluster) bool {
	svc, ok := translate.ClusterService(name, c)
	return !ok || r.membership.Leads(keyspace.Shard(svc, r.opts.Shards))
}

// edsGate is the writer's Fencer with Options.HA. A shard just won is
// handed to the writer only once the assignments of its services, which a
// replica subscribes to only for the shards it leads, have arrived (or the
// sync timeout passed since it was won): until then its endpoints are
// unknown, not empty. Once open for a term, the gate stays open for it.
type edsGate struct {
	leader  etcdsink.Fencer     // the Membership
	awaited func(shard int) int // assignments of shard's services not yet received
	timeout time.Duration       // forgives assignments that never arrive
	wake    func()              // asks the writer to ask again (ShardsChanged)

	mu      sync.Mutex
	waiting map[int]time.Time // shard → when its term was first seen, gate closed
	open    map[int]string    // shard → the term let through
}

func newEDSGate(leader etcdsink.Fencer, awaited func(int) int, timeout time.Duration, wake func()) *edsGate {
	return &edsGate{leader: leader, awaited: awaited, timeout: timeout, wake: wake,
		waiting: map[int]time.Time{}, open: map[int]string{}}
}

// Fence implements etcdsink.Fencer.
func (g *edsGate) Fence(shard int) (clientv3.Cmp, bool) {
	cmp, ok := g.leader.Fence(shard)
	term := cmp.GetCompare().String()
	g.mu.Lock()
	if !ok {
		delete(g.waiting, shard)
		delete(g.open, shard)
		g.mu.Unlock()
		return cmp, false
	}
	if g.open[shard] == term {
		g.mu.Unlock()
		return cmp, true
	}
	since, seen := g.waiting[shard]
	if !seen {
		since = time.Now()
		g.waiting[shard] = since
		time.AfterFunc(g.timeout, g.wake) // ask again once the timeout forgives
	}
	g.mu.Unlock()
	// Not under g.mu: OnUpdate holds the relay's lock and then asks pending.
	if g.awaited(shard) > 0 && time.Since(since) < g.timeout {
		return cmp, false
	}
	g.mu.Lock()
	delete(g.waiting, shard)
	g.open[shard] = term
	g.mu.Unlock()
	return cmp, true
}

// Deposed implements etcdsink.Fencer.
func (g *edsGate) Deposed(shard int) { g.leader.Deposed(shard) }

// pending reports whether a shard waits for its assignments.
func (g *edsGate) pending() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting) > 0
}

// awaited counts the assignments of shard's services not yet received.
func (r *Relay) awaited(shard int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index.AwaitedAssignments(func(svc keyspace.Service) bool {
		return keyspace.Shard(svc, r.opts.Shards) == shard
	})
}

// syncTimeout is the upstream client's sync timeout.
func (r *Relay) syncTimeout() time.Duration {
	if r.opts.SyncTimeout > 0 {
		return r.opts.SyncTimeout
	}
	return sotw.DefaultSyncTimeout
}
