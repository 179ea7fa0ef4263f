package etcdsource

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// maxClustersProbed bounds the reads findClusters makes.
const maxClustersProbed = 8

// checkMarker compares what a synced/<shard> marker says of the relays'
// configuration (docs/contract.md, section 2: shards, cluster) with the
// source's, records a disagreement for Mismatch, and logs it once.
func (s *Source) checkMarker(shard int, m marker) {
	var why string
	switch {
	case m.shards != 0 && m.shards != s.opts.Shards:
		why = fmt.Sprintf("--shards=%d disagrees with the relays' --shards=%d (synced/%d marker): service shards differ, so removals and readiness wait on the wrong markers",
			s.opts.Shards, m.shards, shard)
	case m.cluster != "" && m.cluster != s.space.Cluster():
		why = fmt.Sprintf("--cluster=%q disagrees with the relays' cluster %q (synced/%d marker)", s.space.Cluster(), m.cluster, shard)
	}
	s.setMismatch(why)
}

// checkMarkers checks a freshly loaded marker set: the first disagreeing
// marker is recorded, and none clears the record.
func (s *Source) checkMarkers(markers map[int]marker) {
	shards := slices.Sorted(maps.Keys(markers))
	for _, shard := range shards {
		if m := markers[shard]; (m.shards != 0 && m.shards != s.opts.Shards) || (m.cluster != "" && m.cluster != s.space.Cluster()) {
			s.checkMarker(shard, m)
			return
		}
	}
	s.setMismatch("")
}

// setMismatch records why (or clears it with ""), logging a new reason
// once.
func (s *Source) setMismatch(why string) {
	s.mu.Lock()
	changed := s.mismatch != why
	s.mismatch = why
	s.mu.Unlock()
	if changed && why != "" {
		s.log.Error("configuration mismatch with the relays: "+why, "cluster", s.space.Cluster(), "shards", s.opts.Shards)
	}
}

// Mismatch returns why this source's configuration disagrees with the
// relays' (from the synced markers, or another cluster's keys in an etcd
// that has none of this cluster), or "" when it does not.
func (s *Source) Mismatch() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mismatch
}

// checkCluster runs when etcd holds no generation of this cluster: it
// looks for the cluster ids that do have keys (a few keys-only reads) and
// records a mismatch when there are some.
func (s *Source) checkCluster(ctx context.Context) {
	clusters, err := s.findClusters(ctx)
	if err != nil {
		s.log.Debug("listing the clusters in etcd", "err", err)
		return
	}
	if len(clusters) == 0 {
		s.setMismatch("")
		return
	}
	s.setMismatch(fmt.Sprintf("--cluster=%q has no keys in etcd, which holds clusters %q: check --cluster",
		s.space.Cluster(), clusters))
}

// findClusters returns up to maxClustersProbed cluster ids with keys under
// keyspace.Root, with one keys-only read of one key each.
func (s *Source) findClusters(ctx context.Context) ([]string, error) {
	var out []string
	from := keyspace.Root
	end := clientv3.GetPrefixRangeEnd(keyspace.Root)
	for range maxClustersProbed {
		resp, err := s.c.Get(ctx, from, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 0 {
			break
		}
		rest := strings.TrimPrefix(string(resp.Kvs[0].Key), keyspace.Root)
		c, _, ok := strings.Cut(rest, "/")
		if !ok || c == "" {
			break
		}
		if c != s.space.Cluster() && !slices.Contains(out, c) {
			out = append(out, c)
		}
		from = keyspace.Root + c + "0" // '0' follows '/': the next cluster's keys
	}
	return out, nil
}
