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
// With Options.Fencer the services may be of several shards: the
// transaction then carries the fence of each (see commitPlans).
type txnBuilder struct {
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

func (t *txnBuilder) add(p *plan) {
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

	// flush commits the packed plans.
	flush := func(rest []keyspace.Service) error {
		if len(t.plans) == 0 {
			return nil
		}
		if err := s.commitPlans(ctx, t.plans); err != nil {
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
		t.add(p)
	}
	return flush(nil)
}

// commitPlans commits plans in one transaction and applies them to the
// written cache. With Options.Fencer the transaction carries the fence of
// every shard among plans (docs/contract.md, "Fenced writes"): the plans
// of a shard no longer led are dropped (its new leader writes them), and
// when etcd refuses a transaction of several shards on a fence, the plans
// are committed again shard by shard, which finds the refused shard and
// still writes the others. A lone plan etcd finds too large is recorded as
// unwritable. Any other error is returned; the caller marks plans dirty
// again (those already applied then plan to nothing and write nothing).
func (s *Sink) commitPlans(ctx context.Context, plans []*plan) error {
	shards := []int{-1}
	if s.opts.Fencer != nil {
		shards = shards[:0]
		led := map[int]bool{}
		kept := make([]*plan, 0, len(plans))
		for _, p := range plans {
			shard := keyspace.Shard(p.svc, s.opts.Shards)
			ok, seen := led[shard]
			if !seen {
				_, ok = s.fence(shard)
				led[shard] = ok
				if ok {
					shards = append(shards, shard)
				}
			}
			if ok {
				kept = append(kept, p)
			}
		}
		plans = kept
	}
	if len(plans) == 0 {
		return nil
	}
	var ops []clientv3.Op
	bytes := 0
	for _, p := range plans {
		ops = append(ops, p.ops...)
		bytes += p.bytes
	}
	err := s.commit(ctx, ops, bytes, shards...)
	switch {
	case errors.Is(err, errShardFenced):
		// Dropped: the shard's new leader writes these services.
	case errors.Is(err, errFencesRefused):
		for _, shard := range shards {
			var of []*plan
			for _, p := range plans {
				if keyspace.Shard(p.svc, s.opts.Shards) == shard {
					of = append(of, p)
				}
			}
			if err := s.commitPlans(ctx, of); err != nil {
				return err
			}
		}
	case err == nil:
		for _, p := range plans {
			s.apply(p)
			s.setUnwritable(p.svc, false)
		}
		s.metrics.puts.Add(float64(sumPlans(plans, func(p *plan) int { return p.puts })))
		s.metrics.deletes.Add(float64(sumPlans(plans, func(p *plan) int { return p.deletes })))
	case len(plans) == 1 && tooLarge(err):
		s.unwritable(plans[0].svc, len(ops), bytes, err)
	default:
		return err
	}
	return nil
}

// errFencesRefused reports a transaction of several shards refused on a
// fence (or one of whose shards was lost before it was sent): commit
// them shard by shard to find out which.
var errFencesRefused = errors.New("a fence of a transaction of several shards refused it")

// commit sends ops in one transaction guarded by the generation (and the
// fence: Options.Fence, and with Options.Fencer the fence of every shard
// of shards, where -1 is no shard), after taking their tokens from the
// rate limiter. A transaction of one shard refused by its fence returns
// errShardFenced; one of several shards returns errFencesRefused.
func (s *Sink) commit(ctx context.Context, ops []clientv3.Op, bytes int, shards ...int) error {
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
	var fenced []int
	if s.opts.Fencer != nil {
		for _, shard := range shards {
			if shard >= 0 {
				fenced = append(fenced, shard)
			}
		}
	}
	for _, shard := range fenced {
		cmp, ok := s.fence(shard)
		switch {
		case !ok && len(fenced) > 1:
			return fmt.Errorf("shard %d of %v no longer led: %w", shard, fenced, errFencesRefused)
		case !ok:
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
		switch len(fenced) {
		case 0:
		case 1:
			s.fenced(fenced[0], len(ops))
			return fmt.Errorf("txn of %d ops, shard %d: %w", len(ops), fenced[0], errShardFenced)
		default:
			return fmt.Errorf("txn of %d ops, shards %v: %w", len(ops), fenced, errFencesRefused)
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
