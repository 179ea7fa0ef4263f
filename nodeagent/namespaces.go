package nodeagent

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/backoff"
	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// runNamespace loads every service of namespace ns: it lists the keys of
// services/<ns>/ (keys only) and then watches that prefix for spec keys of
// new services, until ctx is done. Removals come from each service's own
// watch. After a compaction it lists again.
func (a *Agent) runNamespace(ctx context.Context, ns string) {
	prefix := a.space.ServicesPrefix() + ns + "/"
	retry := backoff.New(backoff.Options{Max: 5 * time.Second})
	listed := false
	for {
		rev, err := a.listNamespace(ctx, prefix, !listed)
		if err == nil {
			if !listed {
				listed = true
				a.mu.Lock()
				a.nsListed++
				a.mu.Unlock()
				kick(a.wake)
			}
			retry.Reset()
			err = a.followNamespace(ctx, prefix, rev)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.log.Warn("namespace watch failed, listing again", "namespace", ns, "err", err)
		}
		if !retry.Wait(ctx) {
			return
		}
	}
}

// listNamespace loads the services under prefix and returns the revision
// of the listing.
func (a *Agent) listNamespace(ctx context.Context, prefix string, initial bool) (int64, error) {
	resp, err := a.etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", prefix, err)
	}
	for _, kv := range resp.Kvs {
		if k, ok := a.space.ParseServiceKey(string(kv.Key)); ok && k.Kind == keyspace.KindSpec {
			a.loadNamespaced(k.Service, initial)
		}
	}
	return resp.Header.Revision, nil
}

// followNamespace watches prefix from rev+1 for new spec keys. It returns
// nil when the prefix must be listed again (compaction).
func (a *Agent) followNamespace(ctx context.Context, prefix string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := a.etcd.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithFilterDelete())
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
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
				if k, ok := a.space.ParseServiceKey(string(ev.Kv.Key)); ok && k.Kind == keyspace.KindSpec {
					a.loadNamespaced(k.Service, false)
				}
			}
		}
	}
}

// loadNamespaced watches svc as a service of a loaded namespace. initial
// services (listed at start) count for the first complete reconcile.
func (a *Agent) loadNamespaced(svc keyspace.Service, initial bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.services[svc]
	if s == nil {
		s = &service{key: svc, lastUsed: a.opts.Now()}
		a.services[svc] = s
	}
	s.namespace = true
	s.initial = s.initial || initial
	if !s.watched {
		delete(a.pending, svc) // an eviction not applied yet
		s.watched = true
		a.src.Watch(svc)
	}
}
