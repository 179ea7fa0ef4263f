package nodeagent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// benchEtcdEnv makes the test binary an etcd server for the benchmarks
// (serveBenchEtcd), so that the agents' CPU is measured without etcd's.
const benchEtcdEnv = "MESHRELAY_NODEAGENT_BENCH_ETCD"

// serveBenchEtcd runs an embedded etcd on loopback, prints its endpoints on
// one line and serves until stdin closes. Called from TestMain in the child.
func serveBenchEtcd() {
	srv, err := embedetcd.Start(context.Background(), embedetcd.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench etcd:", err)
		os.Exit(1)
	}
	fmt.Println(strings.Join(srv.Endpoints(), ","))
	io.Copy(io.Discard, os.Stdin) // the parent closes it when done
	srv.Close()
}

// startChildEtcd starts serveBenchEtcd in a child process, stopped by the
// benchmark's cleanup, and returns its endpoints.
func startChildEtcd(tb testing.TB) []string {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchEtcdEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start etcd child: %v", err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("etcd child: %v", err)
	}
	return strings.Split(strings.TrimSpace(line), ",")
}

// changeCounter wraps a datapath and counts the applies that write slots:
// one per change of the benchmark's service (the deferred deletes of
// unreferenced entries write none).
type changeCounter struct {
	datapath.Datapath
	n    *atomic.Int64
	want *atomic.Int64
	done chan struct{} // capacity 1: n reached want
}

func (c changeCounter) Apply(ctx context.Context, cs datapath.ChangeSet) (datapath.ApplyStats, error) {
	st, err := c.Datapath.Apply(ctx, cs)
	if err == nil && len(cs.UpsertSlots) > 0 && c.n.Add(1) == c.want.Load() {
		kick(c.done)
	}
	return st, err
}

// cpuTime returns the process's user + system CPU time.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFanout is the node side of one service change held by many
// nodes: agents on the memory datapath, each with its own etcd client
// (dialled as the agent's main does), watch one service (plus one that never
// changes and keeps every backend referenced); each op changes the service
// once (one endpoint of five replaced) and waits until every agent has
// written it. etcd runs in a child process, so the CPU measured is the
// agents' (and the one writer client's).
//
// Metrics: ns/op is commit → last agent written (the fan-out's tail, 2 ms
// of it the agent's leading-edge pack); cpu-µs/agent-change is the
// process's CPU per (change, agent) pair.
//
//	go test -run '^$' -bench Fanout -benchtime 200x ./nodeagent/
func BenchmarkFanout(b *testing.B) {
	for _, agents := range []int{100, 500} {
		b.Run(fmt.Sprintf("agents=%d", agents), func(b *testing.B) { benchFanout(b, agents) })
	}
}

func benchFanout(b *testing.B, agents int) {
	endpoints := startChildEtcd(b)
	e := envAt(b, endpoints)
	e.markSynced()
	const idx = 7
	svc := testService("bench", idx, 5, 0)
	anchor := testService("bench", 250+idx, 6, 0) // the same six addresses
	e.write(svc, 1)
	e.write(anchor, 1)

	var n, want atomic.Int64
	done := make(chan struct{}, 1)
	want.Store(-1) // counted from the first change on
	log := slog.New(slog.DiscardHandler)
	var all []*Agent
	for range agents {
		c, err := etcddial.Dial(etcddial.Options{Endpoints: endpoints}) // as the agent's main dials
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		dp := changeCounter{Datapath: newMemory(), n: &n, want: &want, done: done}
		a, err := New(c, dp, Options{
			Cluster: testCluster, Logger: log,
			Services: []keyspace.Service{svc.Key, anchor.Key},
		})
		if err != nil {
			b.Fatal(err)
		}
		testenv.Run(b, a.Run)
		all = append(all, a)
	}
	testenv.EventuallyTrue(b, "every agent ready", func() bool {
		for _, a := range all {
			if ok, _ := a.Ready(); !ok {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // deferred deletes of the initial sync
	n.Store(0)
	want.Store(0)
	wait := func(what string) {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			b.Fatalf("%s: %d of %d applies after 20 s", what, n.Load(), want.Load())
		}
	}

	b.ResetTimer()
	cpu0 := cpuTime(b)
	for i := range b.N {
		want.Add(int64(agents))
		e.write(testService("bench", idx, 5, (i+1)%2), uint64(i+2))
		wait(fmt.Sprintf("change %d", i+1))
	}
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*agents), "cpu-µs/agent-change")
}
