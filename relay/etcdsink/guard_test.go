package etcdsink

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// hookedClient calls hook once, when the first transaction after arm is
// built: the moment the writer is between two transactions of one batch.
type hookedClient struct {
	*clientv3.Client
	mu   sync.Mutex
	hook func()
}

func (c *hookedClient) arm(hook func()) {
	c.mu.Lock()
	c.hook = hook
	c.mu.Unlock()
}

func (c *hookedClient) Txn(ctx context.Context) clientv3.Txn {
	c.mu.Lock()
	hook := c.hook
	c.hook = nil
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	return c.Client.Txn(ctx)
}

// TestGuardJudgesRemovalsSetDuringABatch: a batch the guard passed (no
// removal) takes several transactions; an update removing every service's
// VIPs arrives while the first commits. The rest of the batch must not be
// written with the newer, removing, state: that would bypass the guard. All
// the removals are held, and etcd keeps every VIP entry. (The flake of
// relay/TestMassDeletionGuard under load: an empty LDS followed by its RDS
// removal.)
func TestGuardJudgesRemovalsSetDuringABatch(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := &hookedClient{Client: testenv.Client(t, srv.Endpoints())}
	opts := testOptions()
	opts.MaxTxnOps = 8 // the batch of 40 changes takes many transactions
	opts.DeleteHoldTime = time.Hour
	s := New(c, opts)
	testenv.Run(t, s.Run)

	const n = 40
	var svcs []keyspace.Service
	state := func(i, gen int, vips bool) Desired {
		svc := svcName(i)
		var v []string
		if vips {
			v = []string{vip(i)}
		}
		return Desired{Service: svc, State: newService(svc, v, 1, gen)}
	}
	batch := func(gen int, vips bool) []Desired {
		out := make([]Desired, n)
		for i := range n {
			out[i] = state(i, gen, vips)
		}
		return out
	}
	for i := range n {
		svcs = append(svcs, svcName(i))
	}
	s.SetAll(batch(0, true))
	s.Complete(svcs)
	waitSynced(t, s)
	if got := countPrefix(t, c, space.VIPsPrefix()); got != n {
		t.Fatalf("%d VIP entries, want %d", got, n)
	}

	c.arm(func() { s.SetAll(batch(1, false)) }) // arrives during the next batch
	s.SetAll(batch(1, true))                    // changes every endpoint, no removal
	testenv.Eventually(t, "removals held", func() error {
		if h := s.HeldDeletions(); h != n {
			return fmt.Errorf("%d removals held, want %d", h, n)
		}
		return nil
	})
	if got := countPrefix(t, c, space.VIPsPrefix()); got != n {
		t.Fatalf("%d VIP entries left, want %d: removals were written past the guard", got, n)
	}
	for _, svc := range svcs {
		spec := decodeSpec(t, c, svc)
		if len(spec.GetVips()) == 0 {
			t.Fatalf("%s written without VIPs past the guard", svc)
		}
	}
}
