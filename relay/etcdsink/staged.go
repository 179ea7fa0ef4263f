package etcdsink

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// errUnwritable reports a service etcd refuses for its size even in stages
// (e.g. its spec alone exceeds the request limit). It is counted, logged,
// and makes the relay not ready; other services are still written.
var errUnwritable = errors.New("service cannot be written")

// writeStaged writes one service whose change does not fit one
// transaction (docs/contract.md, "Services of any size"): the slices of
// its new slice generation in as many transactions as the limits need
// (invisible to readers, whose spec names the old generation), then the
// spec naming the new generation with the VIP changes in one transaction,
// then the deletes of the old generation's slices. A reader therefore sees
// either the old slices or the new ones, never a mix.
func (s *Sink) writeStaged(ctx context.Context, p *plan) error {
	shard := s.fenceShard(p.svc)
	if err := s.commitChunks(ctx, p.pre, shard); err != nil {
		return s.stagedFailed(ctx, p, err)
	}
	if len(p.ops) > 0 {
		if err := s.commit(ctx, p.ops, p.bytes, shard); err != nil {
			return s.stagedFailed(ctx, p, err)
		}
	}
	s.apply(p)
	s.setUnwritable(p.svc, false)
	s.metrics.puts.Add(float64(p.puts))
	if len(p.post) == 0 {
		s.metrics.deletes.Add(float64(p.deletes))
		return nil
	}
	// Until the old slices are gone they are stale keys: a failure
	// leaves the service dirty and its next plan deletes them.
	w := s.written[p.svc]
	for _, o := range p.post {
		w.stale = append(w.stale, string(o.op.KeyBytes()))
	}
	if err := s.commitChunks(ctx, p.post, shard); err != nil {
		return err
	}
	w.stale, w.staleGen = nil, 0
	s.metrics.deletes.Add(float64(p.deletes))
	return nil
}

// fenceShard is svc's shard with Options.Fencer (its transactions are
// fenced on that shard's leadership), else -1.
func (s *Sink) fenceShard(svc keyspace.Service) int {
	if s.opts.Fencer == nil {
		return -1
	}
	return keyspace.Shard(svc, s.opts.Shards)
}

// commitChunks commits ops in transactions within MaxTxnOps and
// MaxTxnBytes, each fenced on shard (commit).
func (s *Sink) commitChunks(ctx context.Context, ops []stagedOp, shard int) error {
	var (
		batch []clientv3.Op
		bytes int
	)
	for i, o := range ops {
		batch = append(batch, o.op)
		bytes += o.bytes
		last := i == len(ops)-1
		if last || len(batch) == s.opts.MaxTxnOps || bytes+ops[i+1].bytes > s.opts.MaxTxnBytes {
			if err := s.commit(ctx, batch, bytes, shard); err != nil {
				return err
			}
			batch, bytes = batch[:0], 0
		}
	}
	return nil
}

// stagedFailed handles a failed stage before the spec flipped: too large
// means unwritable, and the new generation's slices already written are
// deleted (no reader used them); anything else is retried, rewriting them.
func (s *Sink) stagedFailed(ctx context.Context, p *plan, err error) error {
	if !tooLarge(err) {
		return err
	}
	s.unwritable(p.svc, len(p.ops), p.bytes, err)
	undo := make([]stagedOp, 0, len(p.pre))
	for _, o := range p.pre {
		key := string(o.op.KeyBytes())
		undo = append(undo, stagedOp{op: clientv3.OpDelete(key), bytes: len(key) + opOverhead})
	}
	if uerr := s.commitChunks(ctx, undo, s.fenceShard(p.svc)); uerr != nil {
		s.log.Warn("could not delete the unused slices of an unwritable service; the next load finds them stale", "service", p.svc, "err", uerr)
	}
	return errUnwritable
}

// unwritable records that svc cannot be written: a metric, a log line and
// readiness (Unwritable). Nothing is silently dropped.
func (s *Sink) unwritable(svc keyspace.Service, ops, bytes int, err error) {
	s.metrics.oversized.Add(1)
	s.metrics.recordError(err)
	s.log.Error("service too large for etcd: not written", "service", svc, "ops", ops, "bytes", bytes, "err", err)
	s.setUnwritable(svc, true)
}

func (s *Sink) setUnwritable(svc keyspace.Service, bad bool) {
	if bad {
		s.unwritableSet[svc] = struct{}{}
	} else {
		delete(s.unwritableSet, svc)
	}
	s.unwritableCount.Store(int64(len(s.unwritableSet)))
}

// Unwritable is the number of services etcd refused for their size: their
// etcd state is stale, and the relay is not ready while any is.
func (s *Sink) Unwritable() int { return int(s.unwritableCount.Load()) }
