package embedetcd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
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
// (put, client) pairs, the delivery latency from the put's answer and the
// spread from the first delivery of a put to its last. Client and server
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

// coldWatches is the number of other keys each client watches.
const coldWatches = 49

func benchFanout(b *testing.B, n int) {
	if testing.Short() && n > 100 {
		b.Skip("-short: 1000 connections")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	writer, err := NewClient(s.Endpoints())
	if err != nil {
		b.Fatal(err)
	}
	defer writer.Close()

	const hot = "fanout/hot"
	value := strings.Repeat("v", 512)
	// received[i] is when client i saw each revision of the hot key.
	var (
		mu       sync.Mutex
		received = map[int64][]time.Time{}
		arrived  = make(chan int64, n)
	)
	var wg sync.WaitGroup
	wctx, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	for i := range n {
		c, err := NewClient(s.Endpoints())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		for k := range coldWatches {
			c.Watch(wctx, fmt.Sprintf("fanout/cold/%d/%d", i, k))
		}
		c.Watch(wctx, "fanout/synced/", clientv3.WithPrefix())
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
		resp, err := writer.Put(ctx, hot, value)
		if err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
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
			lat = append(lat, max(t.Sub(committed), 0))
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(processCPU(b)-cpu0)/float64(b.N), "cpu-ms/put")
	b.ReportMetric(ms(quantile(lat, 0.5)), "p50-ms")
	b.ReportMetric(ms(quantile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(quantile(spread, 0.5)), "spread-p50-ms")
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(int(q*float64(len(d))), len(d)-1)]
}

// processCPU is the CPU time (user + system) this process used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
