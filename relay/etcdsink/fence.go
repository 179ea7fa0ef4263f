package etcdsink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/promvalue"
)

// Fencer says which shards this relay leads, and fences their writes
// (docs/contract.md, "Fencing"). relay/shard.Membership implements it.
type Fencer interface {
	// Fence returns the comparison that holds only while this relay leads
	// shard (e.g. the create revision of its election key); ok is false
	// when it does not lead the shard.
	Fence(shard int) (cmp clientv3.Cmp, ok bool)
	// Deposed says etcd refused a write of shard on its fence: another
	// relay leads it now.
	Deposed(shard int)
}

// errShardFenced reports a transaction of one shard refused by its fence:
// the shard's pending writes are dropped, not retried.
var errShardFenced = errors.New("shard fence refused the transaction")

// ownedShard is one term of a shard this Sink writes. Owned by Run.
type ownedShard struct {
	term   string // the fence comparison, as text: names the term
	since  time.Time
	synced bool // its marker was written (or found current) in this term
}

// HeldShard is one shard the Sink writes.
type HeldShard struct {
	Shard int
	// Since is when the Sink took the shard over.
	Since time.Time
	// Synced is true once the shard's synced marker is current in this
	// term: the takeover is complete.
	Synced bool
}

// ShardStats are the Sink's shard counters; zero without Options.Fencer.
type ShardStats struct {
	// Held are the shards written, ascending.
	Held []HeldShard
	// Takeovers counts shards taken over (their keys read, differences
	// written, marker written).
	Takeovers uint64
	// FencedOps counts write operations dropped because the fence of
	// their shard refused the transaction.
	FencedOps uint64
}

// shardState is the part of the shard bookkeeping read from other
// goroutines.
type shardState struct {
	mu        sync.Mutex
	held      []HeldShard
	fencedOps prometheus.Counter
	takeovers prometheus.Histogram // seconds from taking a shard to its marker
}

func newShardState() *shardState {
	return &shardState{
		fencedOps: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "meshrelay", Subsystem: "relay_etcd", Name: "fenced_ops_total",
			Help: "Write operations dropped because the shard's leadership fence refused their transaction.",
		}),
		takeovers: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "meshrelay", Subsystem: "relay_etcd", Name: "takeover_seconds",
			Help:    "From taking a shard's leadership to its synced marker being current.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5 ms .. 40 s
		}),
	}
}

// ShardsChanged tells the Sink that the Fencer's shards changed: the Run
// goroutine takes over the new ones (reads their keys, writes only what
// differs, then their markers) and stops writing the lost ones.
func (s *Sink) ShardsChanged() { s.queue.Mark(task{kind: kindShards}) }

// ShardStats returns the shard counters.
func (s *Sink) ShardStats() ShardStats {
	s.shards.mu.Lock()
	held := slices.Clone(s.shards.held)
	s.shards.mu.Unlock()
	return ShardStats{
		Held:      held,
		Takeovers: uint64(promvalue.Of(s.shards.takeovers)),
		FencedOps: uint64(promvalue.Of(s.shards.fencedOps)),
	}
}

// owns reports whether the Sink writes shard. Run goroutine.
func (s *Sink) owns(shard int) bool {
	return s.opts.Fencer == nil || s.owned[shard] != nil
}

// publishHeld copies the owned shards for ShardStats. Run goroutine.
func (s *Sink) publishHeld() {
	held := make([]HeldShard, 0, len(s.owned))
	for shard, o := range s.owned {
		held = append(held, HeldShard{Shard: shard, Since: o.since, Synced: o.synced})
	}
	slices.SortFunc(held, func(a, b HeldShard) int { return a.Shard - b.Shard })
	s.shards.mu.Lock()
	s.shards.held = held
	s.shards.mu.Unlock()
}

func termOf(c clientv3.Cmp) string { return c.GetCompare().String() }

// syncShards asks the Fencer which shards this relay leads, forgets the
// lost ones, and takes over the new ones: it reads etcd (the previous
// leader's writes are unknown to this Sink), replaces what it knew of
// their services, and marks their desired services and the markers dirty,
// so that only the differences are written, then the markers.
func (s *Sink) syncShards(ctx context.Context) error {
	if s.opts.Fencer == nil {
		return nil
	}
	defer s.publishHeld()
	acquired := map[int]string{}
	for shard := range s.opts.Shards {
		cmp, ok := s.opts.Fencer.Fence(shard)
		cur := s.owned[shard]
		switch {
		case !ok:
			if cur != nil {
				delete(s.owned, shard)
				s.log.Info("stopped writing shard", "shard", shard)
			}
		case cur == nil || cur.term != termOf(cmp):
			acquired[shard] = termOf(cmp)
		}
	}
	if len(acquired) == 0 {
		return nil
	}
	start := time.Now()
	st, err := s.load(ctx)
	if err != nil {
		return fmt.Errorf("take over shards: %w", err)
	}
	if st.generation != s.generation() {
		s.generationChanged("generation differs at shard takeover")
		return errGenerationChanged
	}
	shardOf := func(svc keyspace.Service) int { return keyspace.Shard(svc, s.opts.Shards) }
	for svc := range s.written {
		if _, ok := acquired[shardOf(svc)]; ok {
			delete(s.written, svc)
		}
	}
	for svc, w := range st.written {
		if _, ok := acquired[shardOf(svc)]; ok {
			s.written[svc] = w
		}
	}
	// The VIP index read now is the freshest for every shard.
	for _, w := range s.written {
		w.vips = nil
	}
	s.vipOwner = st.vipOwner
	for ip, svc := range s.vipOwner {
		w := s.written[svc]
		if w == nil {
			w = &writtenService{}
			s.written[svc] = w
		}
		w.vips = append(w.vips, ip)
	}
	for a := range s.authz.written {
		if _, ok := acquired[keyspace.AuthorizationShard(a, s.opts.Shards)]; ok {
			delete(s.authz.written, a)
		}
	}
	for a, h := range st.authz {
		if _, ok := acquired[keyspace.AuthorizationShard(a, s.opts.Shards)]; ok {
			s.authz.written[a] = h
		}
	}
	s.authzInEtcd.Store(int64(len(s.authz.written)))
	for shard, term := range acquired {
		s.owned[shard] = &ownedShard{term: term, since: start}
		if m, ok := st.markers[shard]; ok {
			s.markers[shard] = m
		} else {
			delete(s.markers, shard)
		}
	}

	s.mu.Lock()
	var dirty []task
	for svc := range s.desired {
		if _, ok := acquired[shardOf(svc)]; ok {
			dirty = append(dirty, task{svc: svc})
		}
	}
	for a := range s.authz.desired {
		if _, ok := acquired[keyspace.AuthorizationShard(a, s.opts.Shards)]; ok {
			dirty = append(dirty, task{kind: kindAuthorization, authz: a})
		}
	}
	if s.present != nil {
		dirty = append(dirty, task{kind: kindMarkers})
	}
	s.mu.Unlock()
	s.queue.MarkAll(dirty)
	s.bootstrap()
	s.log.Info("taking over shards", "shards", len(acquired), "services", len(dirty), "read", time.Since(start).Round(time.Millisecond))
	return nil
}

// fence returns the comparison for a transaction of shard, or false when
// the shard is no longer this Sink's to write (a new term is taken over
// by syncShards first).
func (s *Sink) fence(shard int) (clientv3.Cmp, bool) {
	o := s.owned[shard]
	if o == nil {
		return clientv3.Cmp{}, false
	}
	cmp, ok := s.opts.Fencer.Fence(shard)
	if !ok || termOf(cmp) != o.term {
		delete(s.owned, shard)
		s.publishHeld()
		s.ShardsChanged()
		return clientv3.Cmp{}, false
	}
	return cmp, true
}

// fenced handles a transaction of shard refused by its fence: the shard
// is dropped, its ops counted, and the Fencer told.
func (s *Sink) fenced(shard, ops int) {
	s.shards.fencedOps.Add(float64(ops))
	s.metrics.fenceFailures.Add(1)
	delete(s.owned, shard)
	s.publishHeld()
	s.log.Warn("write refused by the shard's fence: another relay leads it; dropping it", "shard", shard, "ops", ops)
	s.opts.Fencer.Deposed(shard)
}

// markerSynced records that shard's marker is current in this term.
func (s *Sink) markerSynced(shard int) {
	o := s.owned[shard]
	if o == nil || o.synced {
		return
	}
	o.synced = true
	s.shards.takeovers.Observe(time.Since(o.since).Seconds())
	s.publishHeld()
}

// compareForWrite orders a batch: by shard first when fenced, so that a
// batch larger than one transaction splits along shards (fewer fences per
// transaction).
func (s *Sink) compareForWrite(a, b keyspace.Service) int {
	if s.opts.Fencer != nil {
		if c := keyspace.Shard(a, s.opts.Shards) - keyspace.Shard(b, s.opts.Shards); c != 0 {
			return c
		}
	}
	return compareServices(a, b)
}
