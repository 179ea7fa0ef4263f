package relay

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
)

// BenchmarkRelayInitialSync10k measures the whole relay path for 10,000
// services × 5 endpoints: a fresh relay connects to the simulator, receives
// CDS/LDS/EDS/RDS, translates, and writes every key into a fresh embedded
// etcd until its synced/* markers are written, in both upstream modes
// (workload: the same services as Istio's ambient workload API over delta,
// 10,000 Service and 50,000 Workload addresses). Target: ≤ 2 s.
//
//	go test -run '^$' -bench RelayInitialSync10k -benchtime 3x ./relay
func BenchmarkRelayInitialSync10k(b *testing.B) {
	for _, mode := range []Mode{ModeSotW, ModeWorkload} {
		b.Run(string(mode), func(b *testing.B) { benchmarkInitialSync(b, mode, false) })
		// As the relay runs by default and in the scale harness: shard
		// leadership through etcd, EDS subscribed for the shards led.
		b.Run(string(mode)+"-shards", func(b *testing.B) { benchmarkInitialSync(b, mode, true) })
	}
}

func benchmarkInitialSync(b *testing.B, mode Mode, shards bool) {
	sim, err := istiodsim.New(istiodsim.Options{Services: 10000, EndpointsPerService: 5, Namespaces: 10})
	if err != nil {
		b.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer sim.Stop()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv, err := embedetcd.Start(context.Background(), embedetcd.Options{Dir: filepath.Join(b.TempDir(), "etcd")})
		if err != nil {
			b.Fatal(err)
		}
		client, err := embedetcd.NewClient(srv.Endpoints())
		if err != nil {
			b.Fatal(err)
		}
		opts := Options{Istiod: sim.Addr(), Mode: mode, RelayID: "bench"}
		if shards {
			opts.HA = &HA{Client: client}
		}
		r, err := New(client, opts)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- r.Run(ctx) }()
		select {
		case <-r.Synced():
		case err := <-done:
			b.Fatalf("relay stopped: %v", err)
		case <-time.After(2 * time.Minute):
			b.Fatal("not synced after 2 minutes")
		}
		elapsed := time.Since(start)
		b.StopTimer()
		st := r.Stats()
		b.ReportMetric(float64(st.Puts)/elapsed.Seconds(), "keys/s")
		b.ReportMetric(float64(st.Txns), "txns")
		cancel()
		<-done
		client.Close()
		srv.Close()
	}
}
