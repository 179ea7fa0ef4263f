package embedetcd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkWatchFanout measures the fan-out of one put to the watchers of
// its key, the "etcd commit → watch delivery" stage of the relay's lag
// (ARCHITECTURE.md): N clients, each on its own connection as node agents
// are, watch the hot key among coldWatches other keys and a prefix (a
// node's services and its synced/ watch). Every iteration puts the hot key
// once and waits until every client received it. It reports, over all
// (put, client) pairs, the delivery latency from sending the put (watchers
// often see the event before the writer sees its answer) and the spread
// from the first delivery of a put to its last. Client and server
// share the process and its cores, as they share the machine in the scale
// test, so the client side's receive cost is part of the figure, and of
// the process's CPU time per put (cpu-ms/put).
//
//	go test ./internal/embedetcd -run '^$' -bench WatchFanout -benchtime 50x
func BenchmarkWatchFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	if testing.Short() && n > 100 {
		b.Skip("-short: 1000 connections")
	}
	s, ctx := startBench(b, 10*time.Minute)
	writer, err := NewClient(s.Endpoints())
	if err != nil {
		b.Fatal(err)
	}
	defer writer.Close()

	const hot = "fanout/hot"
	value := strings.Repeat("v", 512)
	// received[rev] is when each client saw revision rev of the hot key.
	var (
		mu       sync.Mutex
		received = map[int64][]time.Time{}
		arrived  = make(chan int64, n)
	)
	var wg sync.WaitGroup
	wctx, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	for i := range n {
		c := agentClient(b, s, wctx, "fanout/", i)
		wc := c.Watch(wctx, hot, clientv3.WithCreatedNotify())
		if r := <-wc; !r.Created {
			b.Fatalf("client %d: watch not created: %v", i, r.Err())
		}
		wg.Go(func() {
			for r := range wc {
				at := time.Now()
				for _, ev := range r.Events {
					mu.Lock()
					received[ev.Kv.ModRevision] = append(received[ev.Kv.ModRevision], at)
					got := len(received[ev.Kv.ModRevision])
					mu.Unlock()
					if got == n {
						arrived <- ev.Kv.ModRevision
					}
				}
			}
		})
	}

	var lat, spread []time.Duration
	cpu0 := processCPU(b)
	b.ResetTimer()
	for range b.N {
		sent := time.Now()
		resp, err := writer.Put(ctx, hot, value)
		if err != nil {
			b.Fatal(err)
		}
		select {
		case rev := <-arrived:
			if rev != resp.Header.Revision {
				b.Fatalf("all deliveries of revision %d, want %d", rev, resp.Header.Revision)
			}
		case <-ctx.Done():
			b.Fatal("deliveries did not complete")
		}
		mu.Lock()
		ts := received[resp.Header.Revision]
		delete(received, resp.Header.Revision)
		mu.Unlock()
		first, last := slices.MinFunc(ts, time.Time.Compare), slices.MaxFunc(ts, time.Time.Compare)
		spread = append(spread, last.Sub(first))
		for _, t := range ts {
			lat = append(lat, t.Sub(sent))
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(processCPU(b)-cpu0)/float64(b.N), "cpu-ms/put")
	b.ReportMetric(ms(quantile(lat, 0.5)), "p50-ms")
	b.ReportMetric(ms(quantile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(quantile(spread, 0.5)), "spread-p50-ms")
}
