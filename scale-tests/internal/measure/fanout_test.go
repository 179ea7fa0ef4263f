package measure

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestLargestFanout(t *testing.T) {
	commits := []Commit{
		{Addr: "a", Service: "ns/small", Rev: 10, Sent: 100, At: 110},
		{Addr: "b", Service: "ns/head", Rev: 11, Sent: 200, At: 230},
		{Addr: "c", Service: "ns/head", Rev: 11, Sent: 200, At: 230}, // same transaction
		{Addr: "d", Service: "ns/head", Rev: 12, Sent: 300, At: 305},
	}
	deliveries := []Delivery{
		{Node: 1, Service: "ns/small", Rev: 10, At: 120},
		{Node: 1, Service: "ns/head", Rev: 11, At: 225},
		{Node: 2, Service: "ns/head", Rev: 11, At: 260},
		{Node: 3, Service: "ns/head", Rev: 11, At: 240},
		{Node: 1, Service: "ns/head", Rev: 12, At: 310},
		{Node: 2, Service: "ns/head", Rev: 12, At: 311},
		{Node: 9, Service: "ns/head", Rev: 13, At: 400}, // no commit of this revision
	}
	f, ok := LargestFanout(commits, deliveries)
	if !ok {
		t.Fatal("no fan-out found")
	}
	want := Fanout{Service: "ns/head", Rev: 11, Nodes: 3, Sent: 200, Commit: 230, First: 225, Last: 260}
	if f.Service != want.Service || f.Rev != want.Rev || f.Nodes != want.Nodes || f.Sent != want.Sent ||
		f.Commit != want.Commit || f.First != want.First || f.Last != want.Last {
		t.Fatalf("got %+v, want %+v", f, want)
	}
	if _, ok := LargestFanout(commits, nil); ok {
		t.Fatal("a fan-out without deliveries")
	}
}

func TestCPUBetween(t *testing.T) {
	s := NewSampler()
	base := time.Now().UnixNano()
	ms := int64(time.Millisecond)
	s.procs["etcd"] = &sampledProc{trace: []cpuPoint{{base, 1.0}, {base + 10*ms, 1.0}, {base + 20*ms, 1.02}, {base + 30*ms, 1.03}}}
	s.order = append(s.order, "etcd")
	cpu, ok := s.CPUBetween("etcd", base+5*ms, base+25*ms)
	// 1.0 at +5 ms, 1.025 at +25 ms (halfway between 1.02 and 1.03).
	if !ok || cpu < 0.0249 || cpu > 0.0251 {
		t.Fatalf("CPUBetween = %v, %v; want 0.025", cpu, ok)
	}
	if _, ok := s.CPUBetween("etcd", base-ms, base+5*ms); ok {
		t.Fatal("a window starting before the first reading was answered")
	}
	if _, ok := s.CPUBetween("etcd", base, base+31*ms); ok {
		t.Fatal("a window ending after the last reading was answered")
	}
	if _, ok := s.CPUBetween("relay-0", base, base+ms); ok {
		t.Fatal("a component never traced was answered")
	}
}

func TestTraceReadsOwnProcess(t *testing.T) {
	s := NewSampler()
	s.Watch("self", os.Getpid())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Trace(ctx, 5*time.Millisecond); close(done) }()
	// lastReading waits (at most 10 s, for a loaded machine) for a
	// reading taken after t, and returns the time of the latest one.
	lastReading := func(after int64) int64 {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			s.mu.Lock()
			tr := s.procs["self"].trace
			s.mu.Unlock()
			if len(tr) > 0 && tr[len(tr)-1].at > after {
				return tr[len(tr)-1].at
			}
		}
		t.Fatal("no trace reading in 10 s")
		return 0
	}
	// The window runs from a reading before the burn to one after it,
	// so that CPUBetween's answer is the difference of two readings
	// however sparse they are on a loaded machine.
	from := lastReading(0)
	// Burn 60 ms of CPU (by the process's own account, not the clock).
	for start := selfCPU(t); selfCPU(t)-start < 60*time.Millisecond; {
	}
	to := lastReading(time.Now().UnixNano())
	cancel()
	<-done
	cpu, ok := s.CPUBetween("self", from, to)
	if !ok {
		t.Fatal("the trace does not cover the window")
	}
	// Ticks of 10 ms at each end of the window.
	if cpu < 0.04 {
		t.Fatalf("traced %.3f s of CPU while burning 0.06 s", cpu)
	}
}

// selfCPU returns the process's user + system CPU time.
func selfCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
