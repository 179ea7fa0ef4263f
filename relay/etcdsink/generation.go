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
	id := keyspace.NewGeneration()
	key := s.space.Generation()

	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.client.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, id)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return "", fmt.Errorf("create %s: %w", key, err)
	}
	if resp.Succeeded {
		return id, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return "", fmt.Errorf("create %s: lost a race with a delete", key)
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
// and asks for a reload when it says etcd was rebuilt. Caller holds genMu.
func (s *Sink) observeGeneration(gen string, present bool, rev int64) {
	if rebuilt, why := s.incarnation.Observe(gen, present, rev); rebuilt {
		s.generationChanged(why)
	}
}
