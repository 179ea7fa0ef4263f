package etcdsource

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// Complete reads generation and the synced markers at one revision and
// reports whether every shard has a marker of the current generation (a
// completely synced etcd, see docs/contract.md); when not, why says what
// is missing.
func (s *Source) Complete(ctx context.Context) (complete bool, why string, err error) {
	resp, err := s.c.Txn(ctx).Then(
		clientv3.OpGet(s.space.Generation()),
		clientv3.OpGet(s.space.SyncedPrefix(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return false, "", fmt.Errorf("read %s and %s: %w", s.space.Generation(), s.space.SyncedPrefix(), err)
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return false, "no generation", nil
	}
	gen := string(kvs[0].Value)
	synced := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().GetKvs() {
		if m, err := parseMarker(kv); err == nil && m.generation == gen {
			synced[string(kv.Key)] = true
		}
	}
	for shard := range s.opts.Shards {
		if !synced[s.space.Synced(shard)] {
			return false, fmt.Sprintf("shard %d not synced in generation %s", shard, gen), nil
		}
	}
	return true, "", nil
}

// HasSpec reports whether etcd holds svc's spec key, with one count-only read.
func (s *Source) HasSpec(ctx context.Context, svc keyspace.Service) (bool, error) {
	key := s.space.Spec(svc)
	resp, err := s.c.Get(ctx, key, clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("get %s: %w", key, err)
	}
	return resp.Count > 0, nil
}
