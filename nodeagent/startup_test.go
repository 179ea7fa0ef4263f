package nodeagent

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// specGets counts the reads of spec keys (startup's count-only checks).
type specGets struct {
	clientv3.KV
	n atomic.Int64
}

func (c *specGets) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if strings.HasSuffix(key, "/spec") {
		c.n.Add(1)
	}
	return c.KV.Get(ctx, key, opts...)
}

// TestStartupDoesNotReadServicesItsWatchesHold: a declared service that
// its watch holds (here: written after its list, before etcd was
// completely synced) but that waits to be applied (the flush window) costs
// no read of its own at startup - a pool of agents starting together once
// made tens of thousands - and the agent is ready once it is applied.
func TestStartupDoesNotReadServicesItsWatchesHold(t *testing.T) {
	if testing.Short() {
		t.Skip("waits through a startup read round and a 3 s flush window")
	}
	e := newEnv(t)
	first, late := testService("ns", 1, 2, 0), testService("ns", 2, 2, 0)
	e.write(first, 1)
	kv := &specGets{KV: e.client}
	dp := newMemory()
	// After the first flush, the next waits for the window: the late
	// service stays queued, delivered to the agent's loop but not applied.
	ag := start(t, kv, e.client, dp, Options{Services: []keyspace.Service{first.Key, late.Key}, FlushWindow: 3 * time.Second})
	holds(t, dp, expected(first))
	if listed, absent := ag.src.Listed(late.Key); !listed || absent {
		t.Fatalf("late service: listed %v absent %v, want listed, not known absent (no markers yet)", listed, absent)
	}

	e.write(late, 1)
	e.markSynced() // etcd completely synced: startup's reads may now look for specs
	testenv.EventuallyTrue(t, "late service held", func() bool { return ag.src.Present(late.Key) })
	before := kv.n.Load()
	time.Sleep(1200 * time.Millisecond) // a startup read round (every second)
	if n := kv.n.Load() - before; n != 0 {
		t.Errorf("%d reads of spec keys for a service its watch holds", n)
	}
	holds(t, dp, expected(first, late))
	testenv.Eventually(t, "ready", func() error {
		if ok, why := ag.Ready(); !ok {
			return fmt.Errorf("not ready: %s", why)
		}
		return nil
	})
}
