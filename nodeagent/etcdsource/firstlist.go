package etcdsource

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// First lists of services started together are read together: one
// read-only transaction per firstListBatch services holds the generation,
// the synced markers of their shards and every service's keys, at one
// revision, as each service's own list would (watch.go). An agent starting
// with fifty services makes one read instead of fifty, and so does each
// agent of a node pool starting against one etcd. A batch has at most
// 1 + 2 × firstListBatch operations (generation, one marker per shard, one
// prefix per service): at most etcd's default limit of 128 per
// transaction. A failed batch (a smaller limit, a response too large)
// leaves its services to list on their own.
const (
	firstListBatch   = 63
	firstListTimeout = 10 * time.Second
)

// readFirst reads the first lists of ws in batches. Entry i is w[i]'s
// read, or nil when its batch failed (that watch lists on its own, with
// its retries); a failure is only logged.
func (s *Source) readFirst(ctx context.Context, ws []*watch) []*listRead {
	out := make([]*listRead, len(ws))
	for lo := 0; lo < len(ws); lo += firstListBatch {
		hi := min(lo+firstListBatch, len(ws))
		if err := s.readBatch(ctx, ws[lo:hi], out[lo:hi]); err != nil {
			if ctx.Err() != nil {
				return out
			}
			s.log.Debug("reading first lists together failed; each service lists on its own", "services", hi-lo, "err", err)
		}
	}
	return out
}

// readBatch reads the first lists of ws into out in one transaction.
func (s *Source) readBatch(ctx context.Context, ws []*watch, out []*listRead) error {
	ctx, cancel := context.WithTimeout(ctx, firstListTimeout)
	defer cancel()
	ops := []clientv3.Op{clientv3.OpGet(s.space.Generation())}
	markerOp := map[int]int{} // shard → index of its op
	for _, w := range ws {
		if _, ok := markerOp[w.shard]; !ok {
			markerOp[w.shard] = len(ops)
			ops = append(ops, clientv3.OpGet(s.space.Synced(w.shard)))
		}
	}
	base := len(ops)
	for _, w := range ws {
		ops = append(ops, clientv3.OpGet(s.space.ServicePrefix(w.svc), clientv3.WithPrefix()))
	}
	resp, err := s.c.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return err
	}
	first := func(i int) *mvccpb.KeyValue {
		if kvs := resp.Responses[i].GetResponseRange().GetKvs(); len(kvs) > 0 {
			return kvs[0]
		}
		return nil
	}
	gen := first(0)
	for i, w := range ws {
		out[i] = &listRead{
			rev: resp.Header.Revision, generation: gen, marker: first(markerOp[w.shard]),
			kvs: resp.Responses[base+i].GetResponseRange().GetKvs(),
		}
	}
	return nil
}
