package etcdsource

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/backoff"
	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// NamespaceHandler receives what RunNamespace finds.
type NamespaceHandler struct {
	// Found is called with each service whose spec key is under the
	// namespace; initial is true for those of the first listing.
	Found func(svc keyspace.Service, initial bool)
	// Listed is called once, after the first listing's services were
	// passed to Found.
	Listed func()
}

// RunNamespace finds every service of namespace ns: it lists the keys of
// services/<ns>/ (keys only) and then watches that prefix for spec keys of
// new services, until ctx is done; it then returns ctx.Err(). Removals come
// from each service's own watch. After a compaction or an etcd error it
// lists again (errors are logged and retried with backoff), and so when
// Run's control loop finds etcd rebuilt (a new generation, or its revision
// gone backwards: a watch resumed at the old etcd's revision would miss the
// new one's services). The watch is opened under the same gRPC metadata as
// the Source's.
func (s *Source) RunNamespace(ctx context.Context, ns string, h NamespaceHandler) error {
	prefix := s.space.ServicesPrefix() + ns + "/"
	retry := backoff.New(backoff.Options{Max: 5 * time.Second})
	relist := make(chan struct{}, 1)
	s.mu.Lock()
	s.namespaces[relist] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.namespaces, relist)
		s.mu.Unlock()
	}()
	listed := false
	for {
		drain(relist) // this list answers every request made so far
		rev, err := s.listNamespace(ctx, prefix, !listed, h.Found)
		if err == nil {
			if !listed {
				listed = true
				if h.Listed != nil {
					h.Listed()
				}
			}
			retry.Reset()
			err = s.followNamespace(ctx, prefix, rev, relist, h.Found)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.log.Warn("namespace watch failed, listing again", "namespace", ns, "err", err)
		}
		if !retry.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// listNamespace passes the services under prefix to found and returns the
// revision of the listing.
func (s *Source) listNamespace(ctx context.Context, prefix string, initial bool, found func(keyspace.Service, bool)) (int64, error) {
	resp, err := s.c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", prefix, err)
	}
	for _, kv := range resp.Kvs {
		if k, ok := s.space.ParseServiceKey(string(kv.Key)); ok && k.Kind == keyspace.KindSpec {
			found(k.Service, initial)
		}
	}
	return resp.Header.Revision, nil
}

// followNamespace watches prefix from rev+1 for new spec keys. It returns
// nil when the prefix must be listed again (compaction, or relist: etcd
// was rebuilt).
func (s *Source) followNamespace(ctx context.Context, prefix string, rev int64, relist <-chan struct{}, found func(keyspace.Service, bool)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.watchKeys(wctx, prefix, clientv3.GetPrefixRangeEnd(prefix), rev+1, true)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-relist:
			return nil
		case resp, ok := <-wch:
			if !ok {
				return fmt.Errorf("watch %s: channel closed", prefix)
			}
			if resp.CompactRevision != 0 {
				return nil
			}
			if err := resp.Err(); err != nil {
				return fmt.Errorf("watch %s: %w", prefix, err)
			}
			for _, ev := range resp.Events {
				if ev.Type != mvccpb.PUT {
					continue
				}
				if k, ok := s.space.ParseServiceKey(string(ev.Kv.Key)); ok && k.Kind == keyspace.KindSpec {
					found(k.Service, false)
				}
			}
		}
	}
}
