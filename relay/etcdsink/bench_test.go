package etcdsink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// benchServices builds n services of 5 endpoints, each with one VIP in
// 127.77.0.0/16.
func benchServices(n int) ([]keyspace.Service, []*model.Service) {
	keys := make([]keyspace.Service, n)
	svcs := make([]*model.Service, n)
	for i := range n {
		keys[i] = keyspace.Service{Namespace: fmt.Sprintf("ns%d", i%100), Name: fmt.Sprintf("svc-%d", i)}
		svcs[i] = newService(keys[i], []string{fmt.Sprintf("127.77.%d.%d", i/250, i%250+1)}, 5, 0)
	}
	return keys, svcs
}

// BenchmarkInitialSync10k: 10,000 services × 5 endpoints from Set to
// Synced into a fresh embedded etcd, with default options (100 ms window,
// bootstrap rate). Target ≤ 2 s/op.
func BenchmarkInitialSync10k(b *testing.B) {
	keys, svcs := benchServices(10_000)
	var keysWritten uint64
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		srv, err := embedetcd.Start(context.Background(), embedetcd.Options{})
		if err != nil {
			b.Fatal(err)
		}
		c, err := embedetcd.NewClient(srv.Endpoints())
		if err != nil {
			b.Fatal(err)
		}
		s := New(c, Options{Cluster: testCluster})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()

		start := time.Now()
		go func() { done <- s.Run(ctx) }()
		observed := time.Now()
		for i, key := range keys {
			s.Set(key, svcs[i], observed)
		}
		s.Complete(keys)
		select {
		case <-s.Synced():
		case <-time.After(60 * time.Second):
			b.Fatalf("not synced after 60 s: %+v", s.Stats())
		}
		elapsed += time.Since(start)

		b.StopTimer()
		st := s.Stats()
		keysWritten += st.Puts
		cancel()
		<-done
		c.Close()
		srv.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(keysWritten)/elapsed.Seconds(), "keys/s")
}

// BenchmarkSteadyStateChange: with 10,000 services in etcd, one endpoint
// of one service changes; the cost of comparing and writing it (one
// transaction of one key), without the coalescing window.
func BenchmarkSteadyStateChange(b *testing.B) {
	srv := testenv.StartEtcd(b, embedetcd.Options{})
	c := testenv.Client(b, srv.Endpoints())
	keys, svcs := benchServices(10_000)
	s := New(c, Options{Cluster: testCluster, OpsPerSecond: 1e9})
	ctx := context.Background()
	if err := s.reload(ctx); err != nil {
		b.Fatal(err)
	}
	for i, key := range keys {
		s.Set(key, svcs[i], time.Now())
	}
	if err := s.writeServices(ctx, keys); err != nil {
		b.Fatal(err)
	}
	s.limiter.SetLimit(1e9)
	variants := [2]*model.Service{withEndpointPort(svcs[42], 3, 9000), svcs[42]}
	before := s.Stats()
	i := 0
	for b.Loop() {
		s.Set(keys[42], variants[i%2], time.Now())
		if err := s.writeServices(ctx, keys[42:43]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	st := s.Stats()
	if st.Puts-before.Puts != uint64(i) {
		b.Fatalf("%d changes wrote %d keys, want one each", i, st.Puts-before.Puts)
	}
}
