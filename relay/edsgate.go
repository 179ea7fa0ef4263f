package relay

import (
	"slices"
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
// service's shard, or lost it less than a lease TTL ago (a replica that
// rejoins after losing its lease wins its shards back without fetching
// every assignment again). CDS, LDS and RDS stay whole; a cluster of no
// service is always subscribed.
func (r *Relay) wantEDS(name string, c *clusterv3.Cluster) bool {
	svc, ok := translate.ClusterService(name, c)
	if !ok {
		return true
	}
	shard := keyspace.Shard(svc, r.opts.Shards)
	if r.membership.Leads(shard) {
		return true
	}
	r.ledMu.Lock()
	defer r.ledMu.Unlock()
	lost, ok := r.lostAt[shard]
	return ok && time.Since(lost) < r.edsKeep
}

// leadershipChanged is the Membership's OnChange: the writer takes over or
// drops shards, and the EDS subscription follows (at once for shards won,
// a lease TTL later for shards lost).
func (r *Relay) leadershipChanged() {
	r.sink.ShardsChanged()
	now := time.Now()
	held := r.membership.Held()
	r.ledMu.Lock()
	for s := range r.held {
		if !slices.Contains(held, s) {
			r.lostAt[s] = now
		}
	}
	clear(r.held)
	for _, s := range held {
		r.held[s] = true
	}
	r.ledMu.Unlock()
	if r.sotwClient == nil {
		return // the workload API has no EDS to split
	}
	r.sotwClient.Resubscribe()
	time.AfterFunc(r.edsKeep, r.sotwClient.Resubscribe)
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

// awaited counts the assignments of shard's services still on their way:
// subscribed and not yet received (within the sync timeout), or received
// and not yet applied to the index.
func (r *Relay) awaited(shard int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	ix, ok := r.index.(*translate.Index)
	if !ok || r.sotwClient == nil {
		return 0 // workload mode: a service's endpoints arrive with it
	}
	return ix.AwaitedAssignments(func(svc keyspace.Service) bool {
		return keyspace.Shard(svc, r.opts.Shards) == shard
	}, func(eds string) bool {
		awaiting, received := r.sotwClient.EDSState(eds)
		return awaiting || received
	})
}

// syncTimeout is the upstream client's sync timeout.
func (r *Relay) syncTimeout() time.Duration {
	if r.opts.SyncTimeout > 0 {
		return r.opts.SyncTimeout
	}
	return sotw.DefaultSyncTimeout
}
