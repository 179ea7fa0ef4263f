package etcdsink

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// writeMarkers writes synced/<shard> for every shard whose marker is not
// already up to date and whose every desired service is in etcd, then,
// when no shard had to wait, closes Synced and leaves the bootstrap rate.
//
// A marker tells node agents that a service of its shard absent from etcd
// is gone (docs/contract.md, section 2), so it waits, however long, while
// any desired service of its shard has no spec in etcd: not written yet
// after a wipe or a takeover, or its writes failing. The agents keep their
// state meanwhile. A service etcd holds in an older version does not make
// its shard wait (it is not absent). The shards that wait are recorded in
// markersWaiting, so that the batches writing their services try again.
func (s *Sink) writeMarkers(ctx context.Context) error {
	counts := make([]int, s.opts.Shards)
	held := make([]bool, s.opts.Shards)
	missing := make([]int, s.opts.Shards)
	s.mu.Lock()
	for svc, d := range s.desired {
		if d.svc == nil {
			continue
		}
		shard := keyspace.Shard(svc, s.opts.Shards)
		counts[shard]++
		if !s.inEtcd(svc) {
			missing[shard]++
		}
	}
	s.mu.Unlock()
	for svc := range s.guard.held {
		// Still in etcd although upstream no longer has it.
		shard := keyspace.Shard(svc, s.opts.Shards)
		counts[shard]++
		held[shard] = true
	}

	now := keyspace.MarkerTime(time.Now())
	var (
		ops     []clientv3.Op
		bytes   int
		pending []keyspace.Marker
	)
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		shard := -1
		if s.opts.Fencer != nil {
			shard = pending[0].Shard // one marker per transaction
		}
		err := s.commit(ctx, ops, bytes, shard)
		if errors.Is(err, errShardFenced) {
			ops, bytes, pending = ops[:0], 0, pending[:0]
			return nil
		}
		if err != nil {
			return fmt.Errorf("write synced markers: %w", err)
		}
		for _, m := range pending {
			s.markers[m.Shard] = m
			s.markerSynced(m.Shard)
		}
		s.metrics.puts.Add(float64(len(ops)))
		ops, bytes, pending = ops[:0], 0, pending[:0]
		return nil
	}
	waiting := 0
	for shard, n := range counts {
		if !s.owns(shard) {
			continue
		}
		if missing[shard] > 0 {
			waiting++
			s.log.Debug("synced marker waits for services not yet in etcd", "shard", shard, "missing", missing[shard])
			continue
		}
		m := keyspace.Marker{
			Shard: shard, Shards: s.opts.Shards, Cluster: s.space.Cluster(),
			Generation: s.generation(), Relay: s.opts.RelayID, Services: n, Time: now,
			HeldDeletions: held[shard],
		}
		if old, ok := s.markers[shard]; ok && old.SameAs(m) {
			s.markerSynced(shard)
			continue
		}
		b, err := keyspace.EncodeMarker(m)
		if err != nil {
			return err
		}
		key := s.space.Synced(shard)
		ops = append(ops, clientv3.OpPut(key, string(b)))
		bytes += len(key) + len(b) + opOverhead
		pending = append(pending, m)
		if len(ops) == s.opts.MaxTxnOps || s.opts.Fencer != nil {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	s.markersWaiting = waiting > 0
	if waiting > 0 {
		return nil
	}

	// A replica that leads no shard yet has written no marker of its own:
	// it is not synced, and stays at the bootstrap rate for the takeovers
	// to come.
	if s.opts.Fencer != nil && len(s.owned) == 0 {
		return nil
	}
	if s.bootstrapping {
		s.bootstrapping = false
		s.limiter.SetLimit(rate.Limit(s.opts.OpsPerSecond))
		s.log.Info("synced: every shard's marker is up to date", "shards", s.opts.Shards, "generation", s.generation())
	}
	s.syncedOnce.Do(func() { close(s.synced) })
	return nil
}

// inEtcd reports whether etcd holds svc's spec (as written or loaded), or
// svc is one etcd refuses for its size (reported, never written: it must
// not hold up its shard for ever). Caller holds s.mu; Run goroutine.
func (s *Sink) inEtcd(svc keyspace.Service) bool {
	if w := s.written[svc]; w != nil && w.specHash != "" {
		return true
	}
	_, unwritable := s.unwritableSet[svc]
	return unwritable
}
