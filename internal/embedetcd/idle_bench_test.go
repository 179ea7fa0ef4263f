package embedetcd

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkIdleCost measures what an embedded etcd costs the process per
// second of wall time while nothing is written: with no client, and with
// idleClients clients each holding a node agent's watches (49 keys and a
// prefix), without and with a read of one key every probeEvery per client
// (a node agent's generation probe). It reports CPU ms per second.
//
//	go test ./internal/embedetcd -run '^$' -bench IdleCost -benchtime 1x
func BenchmarkIdleCost(b *testing.B) {
	for _, c := range []struct {
		clients int
		probe   time.Duration
	}{{0, 0}, {idleClients, 0}, {idleClients, probeEvery}} {
		b.Run(fmt.Sprintf("clients=%d/probe=%v", c.clients, c.probe), func(b *testing.B) { benchIdle(b, c.clients, c.probe) })
	}
}

const (
	idleClients = 200
	probeEvery  = time.Second
	idleFor     = 10 * time.Second
)

func benchIdle(b *testing.B, clients int, probe time.Duration) {
	s, ctx := startBench(b, 5*time.Minute)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	for i := range clients {
		c := agentClient(b, s, wctx, "idle/", i)
		if probe > 0 {
			wg.Go(func() {
				// Spread over the period, as independent agents are.
				t := time.NewTimer(time.Duration(i) * probe / time.Duration(clients))
				defer t.Stop()
				for {
					select {
					case <-wctx.Done():
						return
					case <-t.C:
						c.Get(wctx, "idle/generation")
						t.Reset(probe)
					}
				}
			})
		}
	}
	time.Sleep(time.Second) // settled
	var total time.Duration
	for b.Loop() {
		cpu0 := processCPU(b)
		time.Sleep(idleFor)
		total += processCPU(b) - cpu0
	}
	b.ReportMetric(ms(total)/float64(b.N)/idleFor.Seconds(), "cpu-ms/s")
	b.ReportMetric(0, "ns/op")
}
