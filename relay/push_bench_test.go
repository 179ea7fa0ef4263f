package relay

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// BenchmarkPushToCommit: one replica (HA on, 16 shards, as the relay's
// main runs it) mirrors 1,000 services. Every iteration replaces the
// endpoints of pushServices services in one debounced Istiod push, as a
// rolling restart does, and waits until etcd holds all of them. Reported:
// ms from the push to the last of its services seen committed (p50 and
// max over the iterations; a watch on one connection sees the commits),
// and the relay's transactions per push. The services of one push fall
// into several shards; they go out in one transaction, not one per shard
// written one after another (the "relay receive → txn sent" stage of the
// scale test's lag).
//
//	go test ./relay -run '^$' -bench PushToCommit -benchtime 40x
func BenchmarkPushToCommit(b *testing.B) {
	const services, pushServices = 1_000, 8
	var pushed atomic.Int64 // unix nanoseconds of the latest push
	sim, err := istiodsim.New(istiodsim.Options{Services: services, EndpointsPerService: 5, Namespaces: 10,
		Debounce: 20 * time.Millisecond, OnPush: func(istiodsim.PushInfo) { pushed.Store(time.Now().UnixNano()) }})
	if err != nil {
		b.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Stop)
	srv := testenv.StartEtcd(b, embedetcd.Options{})
	probe := testenv.Client(b, srv.Endpoints())
	rc := testenv.Client(b, srv.Endpoints())
	r, err := New(rc, Options{Istiod: sim.Addr(), RelayID: "relay-0", HA: &HA{Client: rc}, Logger: testenv.Logger(b)})
	if err != nil {
		b.Fatal(err)
	}
	testenv.Run(b, r.Run)
	testenv.EventuallyTrue(b, "relay ready", func() bool { ok, _ := r.Ready(); return ok })
	time.Sleep(200 * time.Millisecond) // the markers' writes are done

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	space := keyspace.New("")
	wch := probe.Watch(ctx, space.ServicesPrefix(), clientv3.WithPrefix())
	var lat []time.Duration
	txns0 := r.Stats().Txns
	next := 0
	for b.Loop() {
		for range pushServices {
			if err := sim.ChurnEndpoints(next%services, 5); err != nil {
				b.Fatal(err)
			}
			next++
		}
		seen := map[string]bool{}
		deadline := time.After(30 * time.Second)
		for len(seen) < pushServices {
			select {
			case resp := <-wch:
				for _, ev := range resp.Events {
					seen[string(ev.Kv.Key)] = true
				}
			case <-deadline:
				b.Fatalf("%d of %d services committed after 30 s", len(seen), pushServices)
			}
		}
		lat = append(lat, time.Since(time.Unix(0, pushed.Load())))
		time.Sleep(150 * time.Millisecond) // past the coalescing window: each push is a leading edge
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Millisecond), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(float64(r.Stats().Txns-txns0)/float64(b.N), "txns/push")
	b.ReportMetric(0, "ns/op")
}
