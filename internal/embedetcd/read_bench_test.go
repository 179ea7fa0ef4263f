package embedetcd

import (
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkProbeGet measures what a one-key read costs the process (etcd
// and its clients share it), linearizable (a read index through raft, the
// default) against serializable (the member's own state): the reads many
// clients make on a timer, such as a node agent's probe of the generation
// key, are paid once per client per period.
//
//	go test ./internal/embedetcd -run '^$' -bench ProbeGet
func BenchmarkProbeGet(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts []clientv3.OpOption
	}{
		{"linearizable", nil},
		{"serializable", []clientv3.OpOption{clientv3.WithSerializable()}},
	} {
		b.Run(mode.name, func(b *testing.B) { benchProbeGet(b, mode.opts) })
	}
}

// probeClients read in parallel, as many agents' timers do.
const probeClients = 50

func benchProbeGet(b *testing.B, opts []clientv3.OpOption) {
	s, ctx := startBench(b, 5*time.Minute)
	clients := make([]*clientv3.Client, probeClients)
	for i := range clients {
		c, err := NewClient(s.Endpoints())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	if _, err := clients[0].Put(ctx, "probe/generation", "g1"); err != nil {
		b.Fatal(err)
	}
	for _, c := range clients { // connected before the clock starts
		if _, err := c.Get(ctx, "probe/generation"); err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := processCPU(b)
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, probeClients)
	for i, c := range clients {
		n := b.N / probeClients
		if i < b.N%probeClients {
			n++
		}
		wg.Go(func() {
			for range n {
				r, err := c.Get(ctx, "probe/generation", opts...)
				if err == nil && len(r.Kvs) != 1 {
					err = fmt.Errorf("%d keys read", len(r.Kvs))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/get")
}
