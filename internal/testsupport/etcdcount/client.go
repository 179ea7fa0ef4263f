package etcdcount

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Client is a clientv3.KV and clientv3.Watcher that counts what passes
// through it. A range read or watch is recorded as "prefix*".
type Client struct {
	clientv3.KV
	clientv3.Watcher

	// BeforeWatch, if set, runs before each watch is opened (e.g. to hold
	// a watch back); it may block until ctx is done.
	BeforeWatch func(ctx context.Context, key string)

	mu      sync.Mutex
	reads   map[string]int
	watched map[string]int
}

// New wraps kv and w.
func New(kv clientv3.KV, w clientv3.Watcher) *Client {
	return &Client{KV: kv, Watcher: w, reads: map[string]int{}, watched: map[string]int{}}
}

func opKey(op clientv3.Op) string {
	if len(op.RangeBytes()) > 0 {
		return string(op.KeyBytes()) + "*"
	}
	return string(op.KeyBytes())
}

func (c *Client) record(m map[string]int, key string) {
	c.mu.Lock()
	m[key]++
	c.mu.Unlock()
}

// Get records and forwards a read.
func (c *Client) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.record(c.reads, opKey(clientv3.OpGet(key, opts...)))
	return c.KV.Get(ctx, key, opts...)
}

// Do records and forwards an operation.
func (c *Client) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	c.record(c.reads, opKey(op))
	return c.KV.Do(ctx, op)
}

// Txn returns a transaction whose operations are recorded.
func (c *Client) Txn(ctx context.Context) clientv3.Txn {
	return txn{Txn: c.KV.Txn(ctx), c: c}
}

// Watch records and forwards a watch.
func (c *Client) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	c.record(c.watched, opKey(clientv3.OpGet(key, opts...)))
	if c.BeforeWatch != nil {
		c.BeforeWatch(ctx, key)
	}
	return c.Watcher.Watch(ctx, key, opts...)
}

// ReadCount is how often key (or "prefix*") was read.
func (c *Client) ReadCount(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads[key]
}

// Touched returns, sorted, every key or prefix read or watched that lies
// under prefix or contains it (a wider range read counts).
func (c *Client) Touched(prefix string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range []map[string]int{c.reads, c.watched} {
		for k := range m {
			bare := strings.TrimSuffix(k, "*")
			if strings.HasPrefix(bare, prefix) || (strings.HasSuffix(k, "*") && strings.HasPrefix(prefix, bare)) {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

type txn struct {
	clientv3.Txn
	c *Client
}

func (t txn) If(cs ...clientv3.Cmp) clientv3.Txn { return txn{Txn: t.Txn.If(cs...), c: t.c} }

func (t txn) Then(ops ...clientv3.Op) clientv3.Txn {
	for _, op := range ops {
		t.c.record(t.c.reads, opKey(op))
	}
	return txn{Txn: t.Txn.Then(ops...), c: t.c}
}

func (t txn) Else(ops ...clientv3.Op) clientv3.Txn {
	for _, op := range ops {
		t.c.record(t.c.reads, opKey(op))
	}
	return txn{Txn: t.Txn.Else(ops...), c: t.c}
}
