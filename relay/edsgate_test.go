package relay

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// termFencer leads shard 0 in term rev (0: not at all).
type termFencer struct {
	mu  sync.Mutex
	rev int64
}

func (f *termFencer) Fence(shard int) (clientv3.Cmp, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clientv3.Compare(clientv3.CreateRevision("k"), "=", f.rev), shard == 0 && f.rev != 0
}

func (f *termFencer) Deposed(int) {}

func (f *termFencer) set(rev int64) {
	f.mu.Lock()
	f.rev = rev
	f.mu.Unlock()
}

// TestEDSGate: a shard won is handed to the writer only once its
// assignments arrived, stays open for its term whatever arrives later, and
// closes again for a new term; the sync timeout opens it anyway.
func TestEDSGate(t *testing.T) {
	f := &termFencer{}
	var awaited atomic.Int64
	var wakes atomic.Int64
	g := newEDSGate(f, func(int) int { return int(awaited.Load()) }, time.Hour, func() { wakes.Add(1) })

	if _, ok := g.Fence(0); ok {
		t.Fatal("open for a shard not led")
	}
	f.set(7)
	awaited.Store(3)
	if _, ok := g.Fence(0); ok || !g.pending() {
		t.Fatal("open while 3 assignments are awaited")
	}
	awaited.Store(0)
	if _, ok := g.Fence(0); !ok || g.pending() {
		t.Fatal("closed once every assignment arrived")
	}
	awaited.Store(1) // a new cluster of a led shard: the term stays open
	if _, ok := g.Fence(0); !ok {
		t.Fatal("closed again within the term")
	}
	f.set(9) // a new term: closed until its assignments are in
	if _, ok := g.Fence(0); ok {
		t.Fatal("open for a new term while an assignment is awaited")
	}

	short := newEDSGate(f, func(int) int { return 1 }, 50*time.Millisecond, func() { wakes.Add(1) })
	if _, ok := short.Fence(0); ok {
		t.Fatal("open at once")
	}
	deadline := time.Now().Add(10 * time.Second)
	for wakes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := short.Fence(0); !ok || wakes.Load() == 0 {
		t.Fatalf("not open after the sync timeout (wakes %d)", wakes.Load())
	}
}
