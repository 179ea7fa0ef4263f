package relay

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// BenchmarkEtcdWipedRepopulate10k: one replica (default lease TTL, 16
// shards) holds 10,000 services of 5 endpoints (50,000 endpoints); etcd is
// restarted empty on the same port. Reported: seconds from the wipe until
// every spec and slice key is back and all 16 markers name the new
// generation (docs/contract.md asks for ≤ 10 s).
func BenchmarkEtcdWipedRepopulate10k(b *testing.B) { benchmarkEtcdWiped(b, 1) }

// BenchmarkEtcdWipedRepopulate10k3Replicas: the same with three replicas
// sharing the shards (in this process, each on its own etcd client): they
// join again, win the shards again and write them back.
func BenchmarkEtcdWipedRepopulate10k3Replicas(b *testing.B) { benchmarkEtcdWiped(b, 3) }

func benchmarkEtcdWiped(b *testing.B, replicas int) {
	const services, endpoints = 10_000, 5
	sim, err := istiodsim.New(istiodsim.Options{Services: services, EndpointsPerService: endpoints, Namespaces: 100})
	if err != nil {
		b.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Stop)
	srv := testenv.StartEtcd(b, embedetcd.Options{Dir: filepath.Join(b.TempDir(), "etcd")})
	url := srv.Endpoints()[0]
	probe := testenv.Client(b, srv.Endpoints())
	var rs []*Relay
	for i := range replicas {
		rc := testenv.Client(b, srv.Endpoints())
		id := fmt.Sprintf("relay-%d", i)
		r, err := New(rc, Options{Istiod: sim.Addr(), RelayID: id, HA: &HA{Client: rc}, Logger: testenv.Logger(b, "relay", id)})
		if err != nil {
			b.Fatal(err)
		}
		testenv.Run(b, r.Run)
		rs = append(rs, r)
	}
	space := keyspace.New("")
	var slices int64 // slice keys once synced
	back := func(oldGen string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g, err := probe.Get(ctx, space.Generation())
		if err != nil {
			return err
		}
		if len(g.Kvs) == 0 || string(g.Kvs[0].Value) == oldGen {
			return fmt.Errorf("no new generation")
		}
		gen := string(g.Kvs[0].Value)
		resp, err := probe.Get(ctx, space.SyncedPrefix(), clientv3.WithPrefix())
		if err != nil {
			return err
		}
		synced := 0
		for _, kv := range resp.Kvs {
			if m, err := keyspace.ParseMarker(kv.Value); err == nil && m.Generation == gen {
				synced++
			}
		}
		if synced != keyspace.DefaultShards {
			return fmt.Errorf("%d markers of generation %s", synced, gen)
		}
		n, err := probe.Get(ctx, space.ServicesPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if want := services + slices; slices > 0 && n.Count != want {
			return fmt.Errorf("%d service keys, want %d", n.Count, want)
		}
		slices = n.Count - services
		return nil
	}
	// Readiness first: on a loaded machine the upstream sync and the
	// first hand-offs take a while, each replica gets its own wait.
	for _, r := range rs {
		testenv.EventuallyTrue(b, "ready", func() bool { ok, _ := r.Ready(); return ok })
	}
	testenv.Eventually(b, "initial sync", func() error { return back("") })
	// The markers can be current while some endpoints are still on their
	// way (the assignment wait forgives them): count the slice keys again
	// once two reads agree.
	prev := int64(-1)
	testenv.Eventually(b, "slice keys settled", func() error {
		time.Sleep(500 * time.Millisecond)
		n, err := probe.Get(context.Background(), space.ServicesPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if n.Count != prev {
			prev = n.Count
			return fmt.Errorf("%d service keys, changing", n.Count)
		}
		slices = n.Count - services
		return nil
	})
	var total time.Duration
	for b.Loop() {
		g, err := probe.Get(context.Background(), space.Generation())
		if err != nil || len(g.Kvs) == 0 {
			b.Fatalf("generation: %v", err)
		}
		srv.Close()
		start := time.Now()
		srv = testenv.StartEtcd(b, embedetcd.Options{ClientURL: url}) // empty
		testenv.Eventually(b, "repopulated", func() error { return back(string(g.Kvs[0].Value)) })
		b.Logf("repopulated in %v", time.Since(start).Round(time.Millisecond))
		total += time.Since(start)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/repopulate")
	b.ReportMetric(0, "ns/op")
}
