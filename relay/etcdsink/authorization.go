package etcdsink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// DesiredAuthorization is one authorization policy's desired value for
// SetAuthorizations: the bytes stored under
// authorizations/<namespace>/<name> (docs/contract.md, section 1); Value
// nil deletes the key.
type DesiredAuthorization struct {
	Authorization keyspace.Authorization
	Value         []byte
}

// authorizations is the Sink's state of the authorization policy keys. They
// go through the writer like services: coalesced, written only when their
// content hash changes, one shard per fenced transaction, deleted only by an
// explicit removal or the sweep after a complete state, removals judged by
// a mass-deletion guard of their own (guardAuthorizations), keys that do not
// parse swept as stray.
type authorizations struct {
	// Guarded by Sink.mu.
	desired map[keyspace.Authorization][]byte // nil value: delete
	// present is the policy set of the latest CompleteAuthorizations; nil
	// before the first: nothing is swept until the state is known.
	present map[keyspace.Authorization]struct{}

	// Owned by the Run goroutine.
	written map[keyspace.Authorization]uint64 // xxhash of the value in etcd
	held    map[keyspace.Authorization]struct{}
	since   time.Time // when the current hold started
	// passed are the removals the guard let through for the batch being
	// written; a policy deleted after the guard judged the batch waits for
	// the next one (as guard.passed for services).
	passed map[keyspace.Authorization]struct{}
}

func newAuthorizations() authorizations {
	return authorizations{
		desired: map[keyspace.Authorization][]byte{},
		written: map[keyspace.Authorization]uint64{},
		held:    map[keyspace.Authorization]struct{}{},
		passed:  map[keyspace.Authorization]struct{}{},
	}
}

// SetAuthorizations records the desired value of every policy of batch
// (Value nil: delete it). It never blocks on etcd; the latest value wins.
// The Sink keeps the values: the caller must not modify them afterwards.
func (s *Sink) SetAuthorizations(batch []DesiredAuthorization) {
	tasks := make([]task, 0, len(batch))
	s.mu.Lock()
	for _, d := range batch {
		s.authz.desired[d.Authorization] = d.Value
		tasks = append(tasks, task{kind: kindAuthorization, authz: d.Authorization})
	}
	s.mu.Unlock()
	s.queue.MarkAll(tasks)
}

// CompleteAuthorizations says the upstream policy state is complete and
// present lists every policy in it: every other policy the Sink knows,
// desired or found in etcd, is deleted with the sweep of the next Complete.
// Call it before Complete, which starts that sweep; a relay that never
// calls it (SotW mode) never deletes a policy key.
func (s *Sink) CompleteAuthorizations(present []keyspace.Authorization) {
	set := make(map[keyspace.Authorization]struct{}, len(present))
	for _, a := range present {
		set[a] = struct{}{}
	}
	var gone []task
	s.mu.Lock()
	s.authz.present = set
	for a, v := range s.authz.desired {
		if _, ok := set[a]; !ok && v != nil {
			s.authz.desired[a] = nil
			gone = append(gone, task{kind: kindAuthorization, authz: a})
		}
	}
	s.mu.Unlock()
	s.queue.MarkAll(gone)
}

// sweepAuthorizations turns every policy etcd holds that is neither desired
// nor in the latest CompleteAuthorizations into a desired deletion, and
// returns them. Run goroutine.
func (s *Sink) sweepAuthorizations() []keyspace.Authorization {
	var gone []keyspace.Authorization
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authz.present == nil {
		return nil
	}
	for a := range s.authz.written {
		if _, ok := s.authz.desired[a]; ok || !s.owns(keyspace.AuthorizationShard(a, s.opts.Shards)) {
			continue
		}
		if _, ok := s.authz.present[a]; !ok {
			s.authz.desired[a] = nil
			gone = append(gone, a)
		}
	}
	return gone
}

// guardAuthorizations is the mass-deletion guard of policies, the rule of
// services (guardDeletions) applied to the policies in etcd: removals of
// more than Options.MaxDeleteFraction of them (and at least
// Options.DeleteGuardMin) are held, and released by ReleaseDeletions, by
// the complete state of a fresh upstream stream after
// Options.DeleteHoldTime, or once upstream no longer removes that many. It
// returns the policies to write. Run goroutine.
func (s *Sink) guardAuthorizations(keys []keyspace.Authorization, release bool) []keyspace.Authorization {
	z := &s.authz
	s.mu.Lock()
	defer s.mu.Unlock()
	removes := func(a keyspace.Authorization) bool {
		v, desired := z.desired[a]
		_, inEtcd := z.written[a]
		return desired && v == nil && inEtcd
	}
	for a := range z.held {
		if !removes(a) {
			delete(z.held, a) // upstream has it back, or it is gone
		}
	}
	if len(z.held) > 0 && !s.lastComplete.Before(z.since.Add(s.opts.DeleteHoldTime)) {
		s.log.Warn("held policy deletions released: a fresh upstream stream still asks for them after the hold time",
			"authorizations", len(z.held))
		release = true
	}
	removed := len(z.held)
	for _, a := range keys {
		if _, held := z.held[a]; !held && removes(a) {
			removed++
		}
	}
	total := len(z.written)
	if release || removed < s.opts.DeleteGuardMin || float64(removed) <= s.opts.MaxDeleteFraction*float64(total) {
		for a := range z.held {
			keys = append(keys, a)
		}
		clear(z.held)
		s.authzHeld.Store(0)
		s.authzHeldSince.Store(0)
		return s.passAuthorizations(keys, removes)
	}
	if len(z.held) == 0 {
		z.since = time.Now()
		s.authzHeldSince.Store(z.since.UnixNano())
		s.metrics.holds.Add(1)
		s.log.Warn("mass deletion of authorization policies held: keeping the last good state",
			"removed", removed, "in_etcd", total, "max_delete_fraction", s.opts.MaxDeleteFraction,
			"release", "POST /release-deletions on the ops server")
	}
	keys = slices.DeleteFunc(keys, func(a keyspace.Authorization) bool {
		if removes(a) {
			z.held[a] = struct{}{}
			return true
		}
		return false
	})
	s.authzHeld.Store(int64(len(z.held)))
	return s.passAuthorizations(keys, removes)
}

// passAuthorizations records the removals among keys as passed and returns
// keys sorted for writing. Callers hold s.mu.
func (s *Sink) passAuthorizations(keys []keyspace.Authorization, removes func(keyspace.Authorization) bool) []keyspace.Authorization {
	clear(s.authz.passed)
	for _, a := range keys {
		if removes(a) {
			s.authz.passed[a] = struct{}{}
		}
	}
	return s.sortAuthorizations(keys)
}

// sortAuthorizations orders policies for writing, by shard first when
// fenced (one shard per transaction), and removes duplicates.
func (s *Sink) sortAuthorizations(keys []keyspace.Authorization) []keyspace.Authorization {
	slices.SortFunc(keys, func(a, b keyspace.Authorization) int {
		if s.opts.Fencer != nil {
			if c := keyspace.AuthorizationShard(a, s.opts.Shards) - keyspace.AuthorizationShard(b, s.opts.Shards); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return slices.Compact(keys)
}

// authzOp is one policy write packed into a transaction.
type authzOp struct {
	key  keyspace.Authorization
	hash uint64 // of the value put; unused for a delete
	del  bool
}

// writeAuthorizations writes the desired value of keys (sorted by
// sortAuthorizations) where it differs from etcd's by content hash, several
// per transaction, one shard per transaction when fenced. On error, every
// policy not yet committed is marked dirty again.
func (s *Sink) writeAuthorizations(ctx context.Context, keys []keyspace.Authorization) error {
	var (
		ops    []clientv3.Op
		packed []authzOp
		bytes  int
		shard  = -1
	)
	flush := func(rest []keyspace.Authorization) error {
		if len(ops) == 0 {
			return nil
		}
		err := s.commit(ctx, ops, bytes, shard)
		switch {
		case errors.Is(err, errShardFenced):
			// Dropped: the shard's new leader writes these policies.
		case err == nil:
			puts := 0
			for _, p := range packed {
				if p.del {
					delete(s.authz.written, p.key)
					s.forgetAuthorization(p.key)
				} else {
					s.authz.written[p.key] = p.hash
					puts++
				}
			}
			s.authzInEtcd.Store(int64(len(s.authz.written)))
			s.metrics.puts.Add(float64(puts))
			s.metrics.deletes.Add(float64(len(packed) - puts))
		case len(ops) == 1 && tooLarge(err):
			s.metrics.oversized.Add(1)
			s.log.Error("authorization policy too large for etcd: not written", "authorization", packed[0].key, "err", err)
		default:
			s.metrics.retries.Add(1)
			dirty := make([]task, 0, len(packed)+len(rest))
			for _, p := range packed {
				dirty = append(dirty, task{kind: kindAuthorization, authz: p.key})
			}
			for _, a := range rest {
				dirty = append(dirty, task{kind: kindAuthorization, authz: a})
			}
			s.queue.MarkAll(dirty)
			return fmt.Errorf("write authorization policies: %w", err)
		}
		ops, packed, bytes = ops[:0], packed[:0], 0
		return nil
	}

	for i, a := range keys {
		sh := keyspace.AuthorizationShard(a, s.opts.Shards)
		if !s.owns(sh) {
			continue // another relay's shard; taken over, it is marked again
		}
		s.mu.Lock()
		v, ok := s.authz.desired[a]
		_, passed := s.authz.passed[a]
		s.mu.Unlock()
		if !ok {
			continue // nothing desired: only the sweep deletes
		}
		old, inEtcd := s.authz.written[a]
		if v == nil && inEtcd && !passed {
			// Deleted after the guard judged this batch: the next
			// batch's guard judges it.
			s.queue.Mark(task{kind: kindAuthorization, authz: a})
			continue
		}
		op := authzOp{key: a, del: v == nil}
		key := s.space.AuthorizationKey(a)
		var o clientv3.Op
		switch {
		case op.del && !inEtcd:
			s.forgetAuthorization(a)
			continue
		case op.del:
			o = clientv3.OpDelete(key)
		default:
			op.hash = xxhash.Sum64(v)
			if inEtcd && old == op.hash {
				s.metrics.skipped.Add(1)
				s.queue.Unwritten(task{kind: kindAuthorization, authz: a})
				continue
			}
			o = clientv3.OpPut(key, string(v))
		}
		size := len(key) + len(v) + opOverhead
		fenced := s.opts.Fencer != nil
		if len(ops) > 0 && (fenced && sh != shard || len(ops) >= s.opts.MaxTxnOps || bytes+size > s.opts.MaxTxnBytes) {
			if err := flush(keys[i:]); err != nil {
				return err
			}
		}
		if fenced {
			shard = sh
		}
		ops = append(ops, o)
		packed = append(packed, op)
		bytes += size
	}
	return flush(nil)
}

// forgetAuthorization drops a desired deletion once etcd no longer holds
// the policy, unless a newer value was set meanwhile.
func (s *Sink) forgetAuthorization(a keyspace.Authorization) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.authz.desired[a]; ok && v == nil {
		delete(s.authz.desired, a)
	}
}

// HeldAuthorizationDeletions is the number of authorization policies whose
// removal the mass-deletion guard holds.
func (s *Sink) HeldAuthorizationDeletions() int { return int(s.authzHeld.Load()) }

// markAuthorizations marks keys dirty again (a batch that failed before
// writing them).
func (s *Sink) markAuthorizations(keys []keyspace.Authorization) {
	tasks := make([]task, len(keys))
	for i, a := range keys {
		tasks[i] = task{kind: kindAuthorization, authz: a}
	}
	s.queue.MarkAll(tasks)
}
