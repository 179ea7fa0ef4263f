package etcdsink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// txnBuilder packs the plans of several services into one transaction.
type txnBuilder struct {
	shard int // the shard of every plan, with Options.Fencer; else -1
	plans []*plan
	ops   int
	bytes int
	// vips overlays the VIP index with the changes of plans already
	// packed, so the next plan sees them.
	vips map[string]vipChange
}

func (t *txnBuilder) reset() {
	t.plans, t.ops, t.bytes = t.plans[:0], 0, 0
	clear(t.vips)
}

// fits reports whether p can join the transaction: within the operation
// and byte limits (a lone plan always fits by bytes) and not touching a VIP
// entry another packed plan writes, which etcd refuses in one transaction.
func (t *txnBuilder) fits(p *plan, o Options) bool {
	if len(t.plans) == 0 {
		return true
	}
	if o.Fencer != nil && keyspace.Shard(p.svc, o.Shards) != t.shard {
		return false // one shard per transaction: one fence
	}
	if t.ops+len(p.ops) > o.MaxTxnOps || t.bytes+p.bytes > o.MaxTxnBytes {
		return false
	}
	for _, c := range p.vips {
		if _, ok := t.vips[c.ip]; ok {
			return false
		}
	}
	return true
}

func (t *txnBuilder) add(p *plan, o Options) {
	if len(t.plans) == 0 {
		t.shard = -1
		if o.Fencer != nil {
			t.shard = keyspace.Shard(p.svc, o.Shards)
		}
	}
	t.plans = append(t.plans, p)
	t.ops += len(p.ops)
	t.bytes += p.bytes
	for _, c := range p.vips {
		t.vips[c.ip] = c
	}
}

// owner is the ownerFunc of the written VIP index plus the packed plans.
func (s *Sink) owner(t *txnBuilder) ownerFunc {
	return func(ip string) (keyspace.Service, bool) {
		if c, ok := t.vips[ip]; ok {
			return c.owner, !c.remove
		}
		svc, ok := s.vipOwner[ip]
		return svc, ok
	}
}

// writeServices writes the desired state of svcs, packing several services
// per transaction. On error, every service not yet committed is marked
// dirty again.
func (s *Sink) writeServices(ctx context.Context, svcs []keyspace.Service) error {
	t := &txnBuilder{vips: make(map[string]vipChange)}
	owner := s.owner(t)

	// flush commits the packed plans; a lone service etcd finds too large
	// is dropped as oversized instead of failing the batch.
	flush := func(rest []keyspace.Service) error {
		if len(t.plans) == 0 {
			return nil
		}
		ops := make([]clientv3.Op, 0, t.ops)
		for _, p := range t.plans {
			ops = append(ops, p.ops...)
		}
		err := s.commit(ctx, ops, t.bytes, t.shard)
		switch {
		case errors.Is(err, errShardFenced):
			// Dropped: the shard's new leader writes these services.
		case err == nil:
			for _, p := range t.plans {
				s.apply(p)
				s.setUnwritable(p.svc, false)
			}
			s.metrics.puts.Add(float64(sumPlans(t.plans, func(p *plan) int { return p.puts })))
			s.metrics.deletes.Add(float64(sumPlans(t.plans, func(p *plan) int { return p.deletes })))
		case len(t.plans) == 1 && tooLarge(err):
			s.unwritable(t.plans[0].svc, t.ops, t.bytes, err)
		default:
			s.metrics.retries.Add(1)
			dirty := make([]task, 0, len(t.plans)+len(rest))
			for _, p := range t.plans {
				dirty = append(dirty, task{svc: p.svc})
			}
			for _, svc := range rest {
				dirty = append(dirty, task{svc: svc})
			}
			s.queue.MarkAll(dirty)
			return err
		}
		t.reset()
		return nil
	}

	for i, svc := range svcs {
		s.mu.Lock()
		d, ok := s.desired[svc]
		passed := s.passedLocked(svc)
		s.mu.Unlock()
		if !ok {
			continue // nothing desired, nothing to delete: only Complete sweeps
		}
		if !passed {
			// Became a removal after the guard judged this batch: the
			// next batch's guard judges it with the rest of its update.
			s.queue.Mark(task{svc: svc})
			continue
		}
		if !s.owns(keyspace.Shard(svc, s.opts.Shards)) {
			continue // another relay's shard; taken over, it is marked again
		}
		p, err := s.planService(svc, d, owner)
		if err != nil {
			s.metrics.recordError(err)
			s.log.Error("cannot encode service", "service", svc, "err", err)
			continue
		}
		if p.empty() {
			s.metrics.skipped.Add(1)
			s.setUnwritable(svc, false)
			s.queue.Unwritten(task{svc: svc}) // nothing written: its window stays open
			if d.svc == nil {
				s.forgetDeleted(svc)
			}
			continue
		}
		if len(p.pre) > 0 || len(p.post) > 0 || len(p.ops) > s.opts.MaxTxnOps {
			// Written alone, in stages: commit what is packed first.
			if err := flush(svcs[i:]); err != nil {
				return err
			}
			if err := s.writeStaged(ctx, p); err != nil {
				if errors.Is(err, errUnwritable) {
					continue
				}
				dirty := make([]task, 0, len(svcs)-i)
				for _, svc := range svcs[i:] {
					dirty = append(dirty, task{svc: svc})
				}
				s.queue.MarkAll(dirty)
				return err
			}
			continue
		}
		if !t.fits(p, s.opts) {
			// The plan was made against the packed plans' VIP changes;
			// once they are committed it is still right.
			if err := flush(svcs[i:]); err != nil {
				return err
			}
		}
		t.add(p, s.opts)
	}
	return flush(nil)
}

// commit sends ops in one transaction guarded by the generation (and the
// fence: Options.Fence, and with Options.Fencer the fence of shard, which
// is -1 for no shard), after taking their tokens from the rate limiter.
// A transaction refused by shard's fence returns errShardFenced.
func (s *Sink) commit(ctx context.Context, ops []clientv3.Op, bytes, shard int) error {
	start := time.Now()
	if err := s.limiter.WaitN(ctx, len(ops)); err != nil {
		return fmt.Errorf("rate limiter: %w", err)
	}
	s.metrics.throttled.Add(time.Since(start).Seconds())

	genKey := s.space.Generation()
	gen := s.generation()
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.Value(genKey), "=", gen)}
	if s.opts.Fence != nil {
		cmps = append(cmps, s.opts.Fence()...)
	}
	if s.opts.Fencer != nil && shard >= 0 {
		cmp, ok := s.fence(shard)
		if !ok {
			return fmt.Errorf("shard %d no longer led: %w", shard, errShardFenced)
		}
		cmps = append(cmps, cmp)
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	sent := time.Now()
	resp, err := s.client.Txn(rctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(genKey)).Commit()
	cancel()
	if err == nil {
		s.metrics.txnSeconds.Observe(time.Since(sent).Seconds())
	}
	if err != nil {
		return fmt.Errorf("txn of %d ops, %d bytes: %w", len(ops), bytes, err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 || string(kvs[0].Value) != gen {
			s.generationChanged("transaction refused: generation differs")
			return errGenerationChanged
		}
		if s.opts.Fencer != nil && shard >= 0 {
			s.fenced(shard, len(ops))
			return fmt.Errorf("txn of %d ops, shard %d: %w", len(ops), shard, errShardFenced)
		}
		s.metrics.fenceFailures.Add(1)
		return fmt.Errorf("txn of %d ops: %w", len(ops), ErrFenced)
	}
	s.metrics.txns.Add(1)
	s.metrics.bytes.Add(float64(bytes))
	s.progress.committed(time.Now()) // a long batch is progress too
	return nil
}

// tooLarge reports whether etcd (or gRPC) refused a request for its size:
// retrying it cannot help.
func tooLarge(err error) bool {
	if errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrTooManyOps) {
		return true
	}
	var se interface{ GRPCStatus() *status.Status }
	return errors.As(err, &se) && se.GRPCStatus().Code() == codes.ResourceExhausted
}

func sumPlans(plans []*plan, f func(*plan) int) int {
	n := 0
	for _, p := range plans {
		n += f(p)
	}
	return n
}
