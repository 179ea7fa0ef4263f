package etcdsink

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// marker is the JSON value of synced/<shard>.
type marker struct {
	Shard      int    `json:"shard"`
	Generation string `json:"generation"`
	Relay      string `json:"relay"`
	Services   int    `json:"services"`
	Time       string `json:"time"` // RFC 3339
}

// sameAs compares everything but the time: a marker that differs only by
// its time is not rewritten.
func (m marker) sameAs(o marker) bool {
	return m.Shard == o.Shard && m.Generation == o.Generation && m.Relay == o.Relay && m.Services == o.Services
}

// writeMarkers writes synced/<shard> for every shard whose marker is not
// already up to date, then closes Synced and leaves the bootstrap rate.
func (s *Sink) writeMarkers(ctx context.Context) error {
	counts := make([]int, s.opts.Shards)
	s.mu.Lock()
	for svc, d := range s.desired {
		if d.svc != nil {
			counts[keyspace.Shard(svc, s.opts.Shards)]++
		}
	}
	s.mu.Unlock()

	now := time.Now().UTC().Format(time.RFC3339)
	var (
		ops     []clientv3.Op
		bytes   int
		pending []marker
	)
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if err := s.commit(ctx, ops, bytes); err != nil {
			return fmt.Errorf("write synced markers: %w", err)
		}
		for _, m := range pending {
			s.markers[m.Shard] = m
		}
		s.counters.puts.Add(uint64(len(ops)))
		ops, bytes, pending = ops[:0], 0, pending[:0]
		return nil
	}
	for shard, n := range counts {
		m := marker{Shard: shard, Generation: s.generation(), Relay: s.opts.RelayID, Services: n, Time: now}
		if old, ok := s.markers[shard]; ok && old.sameAs(m) {
			continue
		}
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode synced marker: %w", err)
		}
		key := s.space.Synced(shard)
		ops = append(ops, clientv3.OpPut(key, string(b)))
		bytes += len(key) + len(b) + opOverhead
		pending = append(pending, m)
		if len(ops) == s.opts.MaxTxnOps {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}

	if s.bootstrapping {
		s.bootstrapping = false
		s.limiter.SetLimit(rate.Limit(s.opts.OpsPerSecond))
		s.log.Info("synced: every shard's marker is up to date", "shards", s.opts.Shards, "generation", s.generation())
	}
	s.syncedOnce.Do(func() { close(s.synced) })
	return nil
}
