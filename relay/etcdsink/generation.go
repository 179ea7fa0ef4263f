package etcdsink

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// createGeneration puts a fresh random generation id unless another relay
// created one first, and returns the id etcd holds.
func (s *Sink) createGeneration(ctx context.Context) (string, error) {
	return s.putGeneration(ctx, clientv3.Compare(clientv3.CreateRevision(s.space.Generation()), "=", 0))
}

// replaceGeneration puts a fresh random generation id in place of old (an
// etcd restored from an older copy, whose synced markers name old) unless
// another relay replaced it first, and returns the id etcd holds.
func (s *Sink) replaceGeneration(ctx context.Context, old string) (string, error) {
	return s.putGeneration(ctx, clientv3.Compare(clientv3.Value(s.space.Generation()), "=", old))
}

// putGeneration puts a fresh random generation id if cmp holds, and
// returns the id etcd holds.
func (s *Sink) putGeneration(ctx context.Context, cmp clientv3.Cmp) (string, error) {
	id := keyspace.NewGeneration()
	key := s.space.Generation()

	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.client.Txn(rctx).
		If(cmp).
		Then(clientv3.OpPut(key, id)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	if resp.Succeeded {
		return id, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return "", fmt.Errorf("put %s: lost a race with a delete", key)
	}
	return string(kvs[0].Value), nil
}

// watchGeneration calls generationChanged when keyspace.Incarnation says
// etcd was rebuilt: the generation key deleted or replaced, or etcd's
// revision gone backwards. It watches the key and, because a watch cannot
// see an etcd replaced by an empty one (its revision starts over below the
// watch's), also reads it every GenerationCheckInterval. It returns when
// ctx is done.
func (s *Sink) watchGeneration(ctx context.Context) {
	key := s.space.Generation()
	ticker := time.NewTicker(s.opts.GenerationCheckInterval)
	defer ticker.Stop()
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		events := s.client.Watch(clientv3.WithRequireLeader(wctx), key)
	watching:
		for {
			select {
			case <-ctx.Done():
				break watching
			case resp, ok := <-events:
				if !ok || resp.Err() != nil {
					break watching // etcd gone or no leader: re-watch after a tick
				}
				s.genMu.Lock()
				for _, ev := range resp.Events {
					// Revision 0: an event may be older than the
					// revision of the latest check.
					s.observeGeneration(string(ev.Kv.Value), ev.Type != clientv3.EventTypeDelete, 0)
				}
				s.genMu.Unlock()
			case <-ticker.C:
				s.checkGeneration(ctx)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-ticker.C:
			s.checkGeneration(ctx)
		}
	}
}

// checkGeneration reads the generation key once. An unreachable etcd says
// nothing about the generation and is ignored.
func (s *Sink) checkGeneration(ctx context.Context) {
	s.genMu.Lock()
	defer s.genMu.Unlock()
	if s.reloadNeeded.Load() {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	resp, err := s.client.Get(rctx, s.space.Generation())
	cancel()
	if err != nil {
		return
	}
	if len(resp.Kvs) == 0 {
		s.observeGeneration("", false, resp.Header.Revision)
	} else {
		s.observeGeneration(string(resp.Kvs[0].Value), true, resp.Header.Revision)
	}
}

// observeGeneration feeds one read of the generation key to the detector
// and asks for a reload when it says etcd was rebuilt. The generation it
// had, found again at a revision gone backwards, is an older copy's
// (docs/contract.md, "Generation and wiped etcd"): the reload replaces it.
// (Another, at a revision gone backwards, is the one a relay created in a
// wiped etcd, or an older copy's whose markers agents do not trust.)
// Caller holds genMu.
func (s *Sink) observeGeneration(gen string, present bool, rev int64) {
	had, ok := s.incarnation.Generation()
	restored := present && ok && had == gen && s.incarnation.Backwards(rev)
	if rebuilt, why := s.incarnation.Observe(gen, present, rev); rebuilt {
		if restored {
			s.restoredGen = gen
		}
		s.generationChanged(why)
	}
}
