package datapath

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// connectLoop is a client in the cgroup connecting to one VIP in a loop
// (bounded in requests and time) until stopped.
type connectLoop struct {
	mu       sync.Mutex
	requests int
	results  helperResult // summed
	err      error        // of the client itself
	progress chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

func startConnectLoop(h *helper, vip netip.AddrPort, perRequest, maxRequests int, maxTime time.Duration) *connectLoop {
	l := &connectLoop{
		results:  helperResult{Backends: map[string]int{}, Peers: map[string]int{}},
		progress: make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go func() {
		defer close(l.done)
		deadline := time.Now().Add(maxTime)
		for i := 0; i < maxRequests && time.Now().Before(deadline); i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			res, err := h.c.Do(helperCmd{Op: "tcp", Addr: vip.String(), N: perRequest})
			l.mu.Lock()
			if err != nil {
				l.err = err
				l.mu.Unlock()
				return
			}
			l.requests++
			if l.results.Errors == 0 {
				l.results.FirstErr = res.FirstErr
			}
			l.results.Errors += res.Errors
			for k, v := range res.Backends {
				l.results.Backends[k] += v
			}
			for k, v := range res.Peers {
				l.results.Peers[k] += v
			}
			l.mu.Unlock()
			select {
			case l.progress <- struct{}{}:
			default:
			}
		}
	}()
	return l
}

// await waits (at most 30 s) until a request completes after the call, so
// the loop has connected under the state just applied.
func (l *connectLoop) await(t *testing.T, when string) {
	t.Helper()
	select {
	case <-l.progress: // may be from before the call: drain and wait again
	default:
	}
	select {
	case <-l.progress:
	case <-l.done:
		t.Fatalf("%s: the connect loop ended early: %v", when, l.err)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no connects for 30 s", when)
	}
}

func (l *connectLoop) finish() (int, helperResult, error) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests, l.results, l.err
}

// slotHeavyServices returns n services of two backends with weights 1 and
// 1023: 1,024 slots each, exact ratios, and few backends.
func slotHeavyServices(n int) []testService {
	out := make([]testService, n)
	for i := range out {
		out[i] = testService{
			key: NewFrontendKey(vip(i, 80), TCP),
			id:  uint32(i + 1),
			backends: []WeightedBackend{
				{ID: uint32(2*i + 1), Weight: 1},
				{ID: uint32(2*i + 2), Weight: 1023},
			},
		}
	}
	return out
}

// TestBPFGrowShrinkUnderLoad grows a node from nothing to 300,000 slots
// (30,000 with -short) and back while a client in the cgroup connects to a
// VIP in a loop: no connect fails. Half way up the agent restarts (the
// datapath reopened from its pins, the programs reinstalled in place) and
// writes nothing.
func TestBPFGrowShrinkUnderLoad(t *testing.T) {
	steps := []int{1, 10, 50, 150, 293} // services of 1,024 slots: 300,033 with the VIP's
	restartAt := 3
	if testing.Short() {
		steps = []int{1, 5, 15, 30}
		restartAt = 2
	}
	a := tcpBackend(t, "a")
	vipA := netip.MustParseAddrPort("127.77.5.1:80") // vip(1281, 80): no step reaches it
	base := NewState()
	base.PutBackend(1_000_000, a)
	base.PutFrontend(NewFrontendKey(vipA, TCP), 1_000_000, []uint32{1_000_000})
	// The node starts with nothing but the VIP the client uses.
	e := newProgEnv(t, base)
	h := startHelper(t, e.cgroup)
	loop := startConnectLoop(h, vipA, 20, 100_000, 5*time.Minute)
	stopped := false
	defer func() {
		if !stopped {
			loop.finish()
		}
	}()
	loop.await(t, "start")
	if st := e.dp.Stats().Map(MapSlots); st.MaxEntries != minMapEntries {
		t.Fatalf("a node of one slot starts with %+v", st)
	}

	have := base
	stateAt := func(n int) State {
		return mergeInto(stateOf(slotHeavyServices(n), nil), base)
	}
	peak := 0
	for i, n := range steps {
		want := stateAt(n)
		e.apply(t, have, want)
		have = want
		st := e.dp.Stats().Map(MapSlots)
		if st.Entries != len(want.Slots) || st.MaxEntries < st.Entries {
			t.Fatalf("%d slots written: %+v", len(want.Slots), st)
		}
		peak = max(peak, st.MaxEntries)
		loop.await(t, "grown")
		if i == restartAt {
			e.restart(t)
			got := mustDump(t, e.dp)
			cs := DiffStates(got, want)
			if st := mustApply(t, e.dp, cs); !cs.Empty() || st.Syscalls != 0 {
				t.Fatalf("restart at %d slots: %d entries differ, %d write syscalls", len(want.Slots), cs.Len(), st.Syscalls)
			}
			loop.await(t, "restarted")
		}
	}
	if want := len(have.Slots); peak < want {
		t.Fatalf("slots map peaked at %d entries for %d slots", peak, want)
	}
	t.Logf("grown to %d slots (max_entries %d)", len(have.Slots), peak)

	// Back down, then idle Applies until the maps have shrunk.
	for i := len(steps) - 2; i >= 0; i-- {
		want := stateAt(steps[i])
		e.apply(t, have, want)
		have = want
		loop.await(t, "shrinking")
	}
	e.apply(t, have, base)
	for range shrinkAfter {
		mustApply(t, e.dp, ChangeSet{})
	}
	loop.await(t, "shrunk")
	for _, name := range agentMaps {
		if st := e.dp.Stats().Map(name); st.MaxEntries != minMapEntries {
			t.Errorf("%s did not shrink back: %+v", name, st)
		}
	}
	requests, res, err := loop.finish()
	stopped = true
	if err != nil {
		t.Fatal(err)
	}
	connects := res.Backends["a"]
	if res.Errors != 0 {
		t.Fatalf("%d connects failed; first: %s", res.Errors, res.FirstErr)
	}
	if len(res.Backends) != 1 || connects < 20*(2*len(steps)+1) {
		t.Fatalf("connects went to %v, want only a, at least once a step", res.Backends)
	}
	if res.Peers[vipA.String()] != res.Backends["a"] {
		t.Errorf("getpeername: %v", res.Peers)
	}
	t.Logf("%d requests, %d connects through the resizes, 0 failed", requests, connects)
}

// TestBPFResizeKeepsOpenConnections: connections opened before the
// agent-written maps grow, before an agent restart and before the maps
// shrink still show their VIP in getpeername (IPv4 and IPv6) afterwards:
// the reverse-NAT state (rev_nat, keyed by socket cookie) is not part of a
// resize.
func TestBPFResizeKeepsOpenConnections(t *testing.T) {
	vip4 := netip.MustParseAddrPort("127.77.5.2:80")
	vip6 := netip.MustParseAddrPort("[::1]:7790")
	base := NewState()
	base.PutBackend(1_000_000, tcpBackend(t, "a"))
	base.PutBackend(1_000_001, tcpBackendOn(t, ipv6Loopback, "a6"))
	base.PutFrontend(NewFrontendKey(vip4, TCP), 1_000_000, []uint32{1_000_000})
	base.PutFrontend(NewFrontendKey(vip6, TCP), 1_000_001, []uint32{1_000_001})
	e := newProgEnv(t, base)
	h := startHelper(t, e.cgroup)
	conns := &heldConns{h: h, vips: []netip.AddrPort{vip4, vip6}}
	defer h.do(helperCmd{Op: "release"})
	conns.hold(t, "before growing")

	n := 3000
	if testing.Short() {
		n = 300
	}
	big := mergeInto(stateOf(services(n, 10), nil), base)
	e.apply(t, base, big)
	var resizes uint64
	for _, name := range agentMaps {
		resizes += e.dp.Stats().Map(name).Resizes
	}
	if resizes == 0 {
		t.Fatal("no map grew")
	}
	conns.check(t, "after growing")
	conns.hold(t, "after growing")

	e.restart(t)
	conns.check(t, "after a restart")
	conns.hold(t, "after a restart")

	e.apply(t, big, base)
	for range shrinkAfter {
		mustApply(t, e.dp, ChangeSet{})
	}
	if st := e.dp.Stats().Map(MapSlots); st.MaxEntries != minMapEntries || st.Resizes == 0 {
		t.Fatalf("slots did not shrink: %+v", st)
	}
	conns.check(t, "after shrinking")
}
