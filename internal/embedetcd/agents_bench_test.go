package embedetcd

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// startBench starts an etcd for a benchmark and returns it with a context
// that ends with the benchmark (or after timeout).
func startBench(b *testing.B, timeout time.Duration) (*Server, context.Context) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	b.Cleanup(cancel)
	s, err := Start(ctx, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, ctx
}

// coldWatches is the number of keys each agent-like client watches
// besides the benchmark's own.
const coldWatches = 49

// agentClient opens client i of a benchmark on its own connection, with a
// node agent's watches while wctx lasts: coldWatches keys under prefix
// that nothing writes, and the prefix's synced/ keys.
func agentClient(b *testing.B, s *Server, wctx context.Context, prefix string, i int) *clientv3.Client {
	b.Helper()
	c, err := NewClient(s.Endpoints())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for k := range coldWatches {
		c.Watch(wctx, fmt.Sprintf("%scold/%d/%d", prefix, i, k))
	}
	if r := <-c.Watch(wctx, prefix+"synced/", clientv3.WithPrefix(), clientv3.WithCreatedNotify()); !r.Created {
		b.Fatalf("client %d: watch not created: %v", i, r.Err())
	}
	return c
}

// processCPU is the CPU time (user + system) this process used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(int(q*float64(len(d))), len(d)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
