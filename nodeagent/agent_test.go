package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/dpfake"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

var serviceCIDRs = []netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")}

func TestDeclaredServicesConvergeAndChange(t *testing.T) {
	e := newEnv(t)
	a0, a1, other := testService("ns", 1, 3, 0), testService("ns", 2, 2, 0), testService("ns", 3, 2, 0)
	for _, m := range []*model.Service{a0, a1, other} {
		e.write(m, 1)
	}
	e.markSynced()
	dp := dpfake.NewRecorder(newMemory())
	reg := prometheus.NewRegistry()
	ag := start(t, e.client, e.client, dp, Options{Services: []keyspace.Service{a0.Key, a1.Key}, Registerer: reg})
	holds(t, dp, expected(a0, a1))
	testenv.Eventually(t, "ready", func() error {
		if ok, why := ag.Ready(); !ok {
			return fmt.Errorf("not ready: %s", why)
		}
		return nil
	})

	// One endpoint replaced: a handful of entries.
	before := dp.Entries()
	changed := testService("ns", 1, 3, 0)
	changed.Spec.Revision = 0
	eps := changed.Endpoints()
	eps[1].Address = "127.0.1.200"
	changed = model.NewService(changed.Spec, eps)
	e.write(changed, 2)
	holds(t, dp, expected(changed, a1))
	if n := dp.Entries() - before; n > 6 || n == 0 {
		t.Errorf("one endpoint replaced wrote %d entries, want 1..6", n)
	}

	// The replaced backend is deleted in a change set of its own.
	testenv.Eventually(t, "unreferenced entries deleted", func() error {
		if g := ag.Stats().Garbage; g != 0 {
			return fmt.Errorf("%d entries waiting", g)
		}
		return nil
	})
	if n := dp.Entries() - before; n > 6 {
		t.Errorf("one endpoint replaced wrote %d entries, want ≤ 6", n)
	}

	// An identical rewrite (new revision, same content) writes nothing.
	before = dp.Entries()
	applies := ag.Stats().Applies
	e.write(testService("ns", 2, 2, 0), 3)
	time.Sleep(200 * time.Millisecond)
	if n := dp.Entries() - before; n != 0 || ag.Stats().Applies != applies {
		t.Errorf("identical rewrite wrote %d entries in %d applies", n, ag.Stats().Applies-applies)
	}

	// A declared service removed upstream (shard synced) is removed.
	e.remove(a1)
	holds(t, dp, expected(changed))
	if st := ag.Stats(); st.Removals != 1 || st.Lag.Count == 0 {
		t.Errorf("stats %+v: want 1 removal and a lag sample", st)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"meshrelay_nodeagent_propagation_lag_seconds", "meshrelay_nodeagent_map_memlock_bytes", "meshrelay_nodeagent_map_limit_entries", "meshrelay_nodeagent_map_resizes_total", "meshrelay_nodeagent_queue_depth", "meshrelay_nodeagent_ready"} {
		if !slices.Contains(names, want) {
			t.Errorf("metric %s missing from %v", want, names)
		}
	}
}

// TestRestartWritesNothing: a second agent over the same datapath and etcd
// writes no entry.
func TestRestartWritesNothing(t *testing.T) {
	e := newEnv(t)
	var svcs []*model.Service
	var keys []keyspace.Service
	for i := range 10 {
		m := testService("ns", i, 3, 0)
		e.write(m, 1)
		svcs = append(svcs, m)
		keys = append(keys, m.Key)
	}
	e.markSynced()
	mem := newMemory()
	first := start(t, e.client, e.client, mem, Options{Services: keys[:8], OnDemand: true, ServiceCIDRs: serviceCIDRs})
	holds(t, mem, expected(svcs[:8]...))
	// Two services loaded on demand.
	for _, i := range []int{8, 9} {
		if _, ok, err := first.ReportMiss(context.Background(), netip.AddrPortFrom(vipOf(i), 80)); err != nil || !ok {
			t.Fatalf("miss for service %d: %v %v", i, ok, err)
		}
	}
	holds(t, mem, expected(svcs...))
	first.stop()

	rec := dpfake.NewRecorder(mem)
	second := start(t, e.client, e.client, rec, Options{Services: keys[:8], OnDemand: true, ServiceCIDRs: serviceCIDRs})
	testenv.Eventually(t, "second agent ready, orphans adopted", func() error {
		st := second.Stats()
		if !st.Ready || st.Orphans != 0 || st.OnDemand != 2 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	if n := rec.Entries(); n != 0 {
		t.Fatalf("restart wrote %d entries", n)
	}
	holds(t, mem, expected(svcs...))
}

// TestOrphansSweptOnlyWhenKnown: entries of a service the restarted agent
// no longer declares stay until the declared services were delivered and,
// for on-demand VIPs, until a completely synced etcd says they are unknown.
func TestOrphansSweptOnlyWhenKnown(t *testing.T) {
	e := newEnv(t)
	keep, dropped, gone := testService("ns", 1, 2, 0), testService("ns", 2, 2, 0), testService("ns", 3, 2, 0)
	for _, m := range []*model.Service{keep, dropped, gone} {
		e.write(m, 1)
	}
	e.markSynced()
	mem := newMemory()
	first := start(t, e.client, e.client, mem, Options{Services: []keyspace.Service{keep.Key, dropped.Key, gone.Key}})
	holds(t, mem, expected(keep, dropped, gone))
	first.stop()

	// While the agent is down: gone leaves etcd; etcd is then not synced
	// (a relay rebuilding it), so nothing may be removed.
	e.remove(gone)
	if _, err := e.client.Delete(e.ctx(), space.SyncedPrefix(), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	rec := dpfake.NewRecorder(mem)
	second := start(t, e.client, e.client, rec, Options{Services: []keyspace.Service{keep.Key}, OnDemand: true, ServiceCIDRs: serviceCIDRs})
	testenv.Eventually(t, "ready", func() error {
		if ok, why := second.Ready(); !ok {
			return fmt.Errorf("not ready: %s", why)
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // > startupRead: the startup goroutine has looked at etcd
	if d := rec.DeletedFrontends(); len(d) != 0 {
		t.Fatalf("frontends deleted before etcd was synced: %v", d)
	}
	holds(t, mem, expected(keep, dropped, gone))

	// etcd synced: dropped's VIP is still a service (loaded again on
	// demand), gone's is unknown (swept).
	e.markSynced()
	holds(t, mem, expected(keep, dropped))
	if d := rec.DeletedFrontends(); !slices.Equal(d, []string{"tcp/" + gone.Spec.Vips[0] + ":80"}) {
		t.Fatalf("deleted %v, want only %s's frontend", d, gone.Key)
	}
	if st := second.Stats(); st.OnDemand != 1 || st.Orphans != 0 {
		t.Fatalf("stats %+v: want dropped loaded on demand, no orphan", st)
	}
}

func TestAbsentDeclaredServiceDoesNotBlockReadiness(t *testing.T) {
	e := newEnv(t)
	present := testService("ns", 1, 1, 0)
	e.write(present, 1)
	ag := start(t, e.client, e.client, newMemory(), Options{Services: []keyspace.Service{present.Key, {Namespace: "ns", Name: "never"}}})
	time.Sleep(1500 * time.Millisecond)
	if ok, why := ag.Ready(); ok || !strings.Contains(why, "ns/never") {
		t.Fatalf("ready %v (%s) before etcd is known complete; want waiting for ns/never", ok, why)
	}
	e.markSynced()
	testenv.Eventually(t, "ready", func() error {
		if ok, why := ag.Ready(); !ok {
			return fmt.Errorf("not ready: %s", why)
		}
		return nil
	})
}

// manualClock is a settable clock for idle eviction.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestOnDemandCapAndIdleEviction(t *testing.T) {
	e := newEnv(t)
	var svcs []*model.Service
	for i := range 4 {
		m := testService("ns", i, 2, 0)
		e.write(m, 1)
		svcs = append(svcs, m)
	}
	e.markSynced()
	clock := &manualClock{t: time.Unix(1_000_000, 0)}
	mem := newMemory()
	ag := start(t, e.client, e.client, mem, Options{
		OnDemand: true, ServiceCIDRs: serviceCIDRs, MaxServices: 2,
		IdleTimeout: 40 * time.Millisecond, Now: clock.now,
	})
	miss := func(i int) bool {
		t.Helper()
		_, ok, err := ag.ReportMiss(context.Background(), netip.AddrPortFrom(vipOf(i), 80))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	miss(0)
	clock.advance(time.Millisecond)
	miss(1)
	holds(t, mem, expected(svcs[0], svcs[1]))
	clock.advance(time.Millisecond)
	ag.ReportUse(vipOf(0)) // 1 is now the least recently used
	clock.advance(time.Millisecond)
	miss(2)
	holds(t, mem, expected(svcs[0], svcs[2]))
	if st := ag.Stats(); st.EvictedLRU != 1 || st.OnDemand != 2 {
		t.Fatalf("stats %+v: want one LRU eviction, two on-demand services", st)
	}
	// Misses outside the service CIDRs are ignored, without etcd reads.
	gets := ag.Stats().Source.Gets
	if _, ok, _ := ag.ReportMiss(context.Background(), netip.MustParseAddrPort("127.0.0.1:80")); ok || ag.Stats().Source.Gets != gets {
		t.Fatal("a miss outside the service CIDRs was resolved")
	}
	// Idle: both go once the clock passes the timeout.
	clock.advance(time.Second)
	holds(t, mem, nil)
	if st := ag.Stats(); st.EvictedIdle != 2 || st.Services != 0 || st.Source.Services != 0 {
		t.Fatalf("stats %+v: want two idle evictions and nothing watched", st)
	}
}

func TestApplyFailureIsRetried(t *testing.T) {
	e := newEnv(t)
	m := testService("ns", 1, 5, 0)
	e.write(m, 1)
	e.markSynced()
	mem := newMemory()
	faulty := dpfake.NewFaulty(mem, dpfake.FaultOptions{FailNthBatch: 2, PartialBatch: 2})
	ag := start(t, e.client, e.client, faulty, Options{Services: []keyspace.Service{m.Key}})
	holds(t, mem, expected(m))
	if st := ag.Stats(); st.ApplyErrors != 1 || !st.Ready {
		t.Fatalf("stats %+v: want one failed apply, then ready", st)
	}
}

func TestNamespaces(t *testing.T) {
	e := newEnv(t)
	a, b, other := testService("ns-a", 1, 2, 0), testService("ns-a", 2, 2, 0), testService("ns-b", 3, 2, 0)
	for _, m := range []*model.Service{a, b, other} {
		e.write(m, 1)
	}
	mem := newMemory()
	ag := start(t, e.client, e.client, mem, Options{Namespaces: []string{"ns-a"}})
	holds(t, mem, expected(a, b))
	c := testService("ns-a", 4, 1, 0)
	e.write(c, 1)
	holds(t, mem, expected(a, b, c))
	if st := ag.Stats(); !st.Ready || st.Namespaced != 3 {
		t.Fatalf("stats %+v: want ready with 3 namespace services", st)
	}
	if _, err := New(e.client, mem, Options{Namespaces: []string{"a/b"}}); err == nil {
		t.Fatal("a namespace with '/' was accepted")
	}
}

// TestConflictingVIPHandOver: two services claim the same VIP and port;
// one holds the frontend, and the other takes it over when the first goes.
func TestConflictingVIPHandOver(t *testing.T) {
	e := newEnv(t)
	a := testService("ns", 1, 2, 0)
	b := testService("ns", 2, 3, 0)
	b.Spec.Vips = a.Spec.Vips
	b = model.NewService(b.Spec, b.Endpoints())
	e.write(a, 1)
	e.markSynced()
	mem := newMemory()
	ag := start(t, e.client, e.client, mem, Options{Services: []keyspace.Service{a.Key, b.Key}})
	holds(t, mem, expected(a))
	e.write(b, 1)
	testenv.Eventually(t, "conflict seen", func() error {
		if n := ag.Stats().Conflicts; n == 0 {
			return fmt.Errorf("no conflict counted")
		}
		return nil
	})
	holds(t, mem, expected(a))
	e.remove(a)
	holds(t, mem, expected(b))
}

// attachFails is a datapath whose programs cannot be attached.
type attachFails struct{ datapath.Datapath }

func (attachFails) Attach(context.Context, []netip.Prefix) (*datapath.Programs, error) {
	return nil, errors.New("no cgroup")
}

// TestRunReturnsAttachError: a part of the agent that fails ends Run with
// its error (not a log line), and the agent never reports ready.
func TestRunReturnsAttachError(t *testing.T) {
	e := newEnv(t)
	a, err := New(e.client, attachFails{datapath.NewMemory(datapath.MemoryOptions{})}, Options{Cluster: testCluster})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(e.ctx())
	if err == nil || !strings.Contains(err.Error(), "attach programs: no cgroup") {
		t.Fatalf("Run = %v, want the attach error", err)
	}
	if ok, _ := a.Ready(); ok {
		t.Fatal("ready although the programs were not attached")
	}
}
