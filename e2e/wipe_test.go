package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/dpfake"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/relay"
)

// TestSlowEtcdRebuildDeletesNothing: etcd is replaced by an empty one
// while the relay (with shard leadership, as deployed) reaches it over a
// slow link, so that repopulating it takes many write rounds. No synced
// marker of the new generation may appear before its shard's services are
// back (docs/contract.md, section 2), so the agent, which keeps every
// service upstream still has, deletes no datapath entry meanwhile.
func TestSlowEtcdRebuildDeletesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd behind a slow link")
	}
	const services = 600
	w := &world{t: t, sim: newSim(t, istiodsim.Options{Services: services, EndpointsPerService: 2})}
	w.startEtcd("")
	w.url = w.etcd.Endpoints()[0]
	w.client = testenv.Client(t, w.etcd.Endpoints())
	proxy := startProxy(t, w.url)
	rc := dialVia(t, proxy.URL())
	opts := relayOptions(w.sim.Addr(), relay.ModeSotW)
	// Shard leadership, as deployed; small transactions, so that the
	// rebuild takes many write rounds behind the slow link.
	opts.HA = &relay.HA{Client: rc, LeaseTTL: 2 * time.Second, Pod: "relay-e2e"}
	opts.Sink.MaxTxnOps = 16
	opts.Sink.RequestTimeout = 2 * time.Second
	w.runRelay(rc, opts)
	r := w.relay

	declared := make([]int, 0, services/3)
	var keys []keyspace.Service
	for i := 0; i < services; i += 3 {
		declared = append(declared, i)
		keys = append(keys, w.svcKey(i))
	}
	rec := dpfake.NewRecorder(newMemory())
	a := startAgent(t, w.client, rec, nodeagent.Options{Services: keys})
	w.converges(rec, declared...)
	w.quiesce()

	before := countKeys(t, w.client)
	proxy.SetLatency(3 * time.Millisecond)
	w.wipe()
	testenv.Eventually(t, "generation change seen", func() error {
		if st := a.Stats().Source; st.GenerationChanges == 0 {
			return fmt.Errorf("source stats %+v", st)
		}
		return nil
	})
	testenv.Eventually(t, "etcd rebuilt", func() error {
		if n := countKeys(t, w.client); n != before {
			return fmt.Errorf("%d keys, want %d", n, before)
		}
		return nil
	})
	w.quiesce()
	w.converges(rec, declared...)
	if d := rec.DeletedFrontends(); len(d) != 0 {
		t.Errorf("%d frontends deleted across the etcd rebuild, e.g. %v", len(d), d[:min(len(d), 5)])
	}
	if n := rec.DeletedBackends(); n != 0 {
		t.Errorf("%d backends deleted across the etcd rebuild", n)
	}
	st := a.Stats().Source
	t.Logf("relay: %+v; agent source: %d generation changes, %d re-lists, %d removals deferred",
		r.ShardStats(), st.GenerationChanges, st.Relists, st.DeferredDeletes)
}

// countKeys counts the keys under services/, vips/ and synced/: what the
// relay rebuilds after a wipe.
func countKeys(t *testing.T, c *clientv3.Client) int64 {
	t.Helper()
	n := int64(0)
	for _, prefix := range []string{space.ServicesPrefix(), space.VIPsPrefix(), space.SyncedPrefix()} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		n += r.Count
	}
	return n
}
