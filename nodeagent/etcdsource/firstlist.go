package etcdsource

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The first lists of services that start watching together are read
// together: one read-only transaction per firstListBatch services holds the
// generation, the synced markers of their shards and every service's keys,
// at one revision, as each service's own list would (watch.go). An agent
// starting with fifty services makes one read instead of fifty, and so does
// each agent of a node pool starting against one etcd. A batch has at most
// 1 + 2 × firstListBatch operations (generation, one marker per shard, one
// prefix per service): within etcd's default limit of 128 per transaction.
// A failed batch (a smaller limit, a response too large, no answer within
// firstListTimeout) leaves its services to list on their own.
const (
	firstListBatch   = 63
	firstListTimeout = time.Minute
)

// firstList is the first lists of one batch of watches, being read.
type firstList struct {
	done  chan struct{} // closed when reads is set
	reads []*listRead   // entry i: watch i's read; all nil when the read failed
}

func newFirstList(n int) *firstList {
	return &firstList{done: make(chan struct{}), reads: make([]*listRead, n)}
}

// wait returns entry i once the batch was read (nil when the read failed);
// ok is false when ctx ended first.
func (fl *firstList) wait(ctx context.Context, i int) (r *listRead, ok bool) {
	select {
	case <-fl.done:
		return fl.reads[i], true
	case <-ctx.Done():
		return nil, false
	}
}

// readFirst reads the first lists of ws into fl in one transaction. A
// failure is only logged: each watch then lists on its own, with its
// retries.
func (s *Source) readFirst(ctx context.Context, ws []*watch, fl *firstList) {
	defer close(fl.done)
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
		s.log.Debug("reading first lists together failed; each service lists on its own", "services", len(ws), "err", err)
		return
	}
	first := func(i int) *mvccpb.KeyValue {
		if kvs := resp.Responses[i].GetResponseRange().GetKvs(); len(kvs) > 0 {
			return kvs[0]
		}
		return nil
	}
	gen := first(0)
	parsed := map[int]*parsedMarker{} // shard → its marker parsed once for the batch
	for i, w := range ws {
		r := &listRead{
			rev: resp.Header.Revision, generation: gen, marker: first(markerOp[w.shard]),
			kvs: resp.Responses[base+i].GetResponseRange().GetKvs(),
		}
		if r.marker != nil {
			if r.parsed = parsed[w.shard]; r.parsed == nil {
				r.parsed = new(parsedMarker)
				r.parsed.m, r.parsed.err = parseMarker(r.marker)
				parsed[w.shard] = r.parsed
			}
		}
		fl.reads[i] = r
	}
}
