package etcdsource

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

func TestWatchReadsOnlyWatchedServices(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	cc := newCountingClient(testenv.Client(t, srv.Endpoints()))
	put(t, writer, space.Generation(), "g1")
	a, b := keyspace.Service{Namespace: "ns", Name: "a"}, keyspace.Service{Namespace: "ns", Name: "ab"} // "ab" shares a's name prefix
	writeService(t, writer, service(a, 3, 0), 1, 0)
	writeService(t, writer, service(b, 3, 0), 1, 0)

	src := runSource(t, cc, Options{})
	rec := newRecorder(t, src)
	src.Watch(a)
	src.Watch(a) // idempotent
	ev := rec.waitFor(a, "initial state", hasHash(service(a, 3, 0)))
	if ev.Revision == 0 || len(ev.State.Endpoints()) != 3 {
		t.Fatalf("initial event %+v", ev)
	}

	a2 := service(a, 1500, 7) // two slices
	writeService(t, writer, a2, 2, 1)
	writeService(t, writer, service(b, 4, 0), 2, 1)
	ev = rec.waitFor(a, "update", hasHash(a2))
	if len(ev.State.Slices) != 2 || len(ev.State.Endpoints()) != 1500 {
		t.Fatalf("update has %d slices, %d endpoints", len(ev.State.Slices), len(ev.State.Endpoints()))
	}
	a3 := service(a, 2, 9) // back to one slice: endpoints/1 deleted in the same txn
	writeService(t, writer, a3, 3, 2)
	ev = rec.waitFor(a, "shrink", hasHash(a3))
	if len(ev.State.Slices) != 1 {
		t.Fatalf("shrunk service has %d slices", len(ev.State.Slices))
	}

	rec.poll()
	if got := rec.got[b]; len(got) != 0 {
		t.Fatalf("events for unwatched %s: %v", b, got)
	}
	for _, key := range cc.Touched(space.ServicesPrefix()) {
		if key != space.ServicePrefix(a)+"*" {
			t.Errorf("read or watched %q; only %q* may be", key, space.ServicePrefix(a))
		}
	}
	if st := src.Stats(); st.Services != 1 || st.Lists != 1 || st.WatchesOpen != 3 {
		t.Errorf("stats %+v: want 1 service, 1 list, 3 watches", st)
	}
}

// gauge reads one of etcd's process-wide prometheus gauges.
func gauge(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

func TestWatchesShareOneStream(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	c := testenv.Client(t, srv.Endpoints())
	put(t, writer, space.Generation(), "g1")
	streams0 := gauge(t, "etcd_debugging_mvcc_watch_stream_total")
	watchers0 := gauge(t, "etcd_debugging_mvcc_watcher_total")

	src := runSource(t, c, Options{})
	const n = 6
	for i := range n {
		src.Watch(keyspace.Service{Namespace: "ns", Name: "s" + string(rune('a'+i))})
	}
	testenv.EventuallyTrue(t, "all watches open", func() bool {
		return gauge(t, "etcd_debugging_mvcc_watcher_total")-watchers0 == n+2
	})
	if d := gauge(t, "etcd_debugging_mvcc_watch_stream_total") - streams0; d != 1 {
		t.Fatalf("%d watches use %v gRPC watch streams, want 1", n+2, d)
	}
	if st := src.Stats(); st.WatchesOpen != n+2 {
		t.Fatalf("WatchesOpen = %d, want %d", st.WatchesOpen, n+2)
	}
}

func TestResolveCachesMisses(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	cc := newCountingClient(testenv.Client(t, srv.Endpoints()))
	src := New(cc, Options{Cluster: testCluster, NegativeTTL: 5 * time.Second})
	now := time.Unix(1000, 0)
	src.now = func() time.Time { return now }
	ctx := ctxT(t)

	known := netip.MustParseAddr("127.77.0.10")
	put(t, writer, space.VIP(known.String()), "ns/a")
	svc, ok, err := src.Resolve(ctx, known)
	if err != nil || !ok || svc != (keyspace.Service{Namespace: "ns", Name: "a"}) {
		t.Fatalf("Resolve(%s) = %v %v %v", known, svc, ok, err)
	}
	// A v4-mapped address is the same VIP.
	if svc, ok, err := src.Resolve(ctx, netip.MustParseAddr("::ffff:127.77.0.10")); err != nil || !ok || svc.Name != "a" {
		t.Fatalf("mapped: %v %v %v", svc, ok, err)
	}

	// Addresses are read by /24: one range read answers the whole /24.
	range0 := space.VIP("127.77.0.") + "*"
	unknown := netip.MustParseAddr("127.77.0.99")
	for range 20 {
		if _, ok, err := src.Resolve(ctx, unknown); err != nil || ok {
			t.Fatalf("unknown VIP resolved: %v %v", ok, err)
		}
	}
	if n := cc.ReadCount(range0); n != 1 {
		t.Fatalf("a known and 20 lookups of an unknown VIP of one /24 within the TTL read etcd %d times, want 1", n)
	}
	// A scan of other unknown addresses of another /24: one read in all.
	for i := range 50 {
		ip := netip.AddrFrom4([4]byte{127, 77, 1, byte(i)})
		src.Resolve(ctx, ip)
		src.Resolve(ctx, ip)
	}
	if st := src.Stats(); st.Gets != 2 || st.NegativeHits != 20+99 {
		t.Fatalf("stats %+v: want 2 gets, 119 negative hits", st)
	}

	// The VIP appears; the miss is remembered until the TTL passes.
	put(t, writer, space.VIP(unknown.String()), "ns/b")
	if _, ok, _ := src.Resolve(ctx, unknown); ok {
		t.Fatal("miss forgotten before its TTL")
	}
	now = now.Add(6 * time.Second)
	if svc, ok, err := src.Resolve(ctx, unknown); err != nil || !ok || svc.Name != "b" {
		t.Fatalf("after the TTL: %v %v %v", svc, ok, err)
	}
	if n := cc.ReadCount(range0); n != 2 {
		t.Fatalf("the /24 of the unknown VIP read %d times, want 2", n)
	}
	// The known VIP is answered from the same read.
	if svc, ok, err := src.Resolve(ctx, known); err != nil || !ok || svc.Name != "a" {
		t.Fatalf("known after the TTL: %v %v %v", svc, ok, err)
	}
	if n := cc.ReadCount(range0); n != 2 {
		t.Fatalf("the /24 read %d times, want 2", n)
	}
	for _, key := range cc.Touched(space.ServicesPrefix()) {
		t.Errorf("Resolve touched %s", key)
	}
}

func TestUnwatchStopsEvents(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	put(t, writer, space.Generation(), "g1")
	a, b := keyspace.Service{Namespace: "ns", Name: "a"}, keyspace.Service{Namespace: "ns", Name: "b"}
	writeService(t, writer, service(a, 2, 0), 1, 0)
	writeService(t, writer, service(b, 2, 0), 1, 0)
	src := runSource(t, testenv.Client(t, srv.Endpoints()), Options{})
	rec := newRecorder(t, src)
	src.Watch(a)
	src.Watch(b)
	rec.waitFor(a, "a", hasHash(service(a, 2, 0)))
	rec.waitFor(b, "b", hasHash(service(b, 2, 0)))

	writeService(t, writer, service(a, 3, 0), 2, 1) // may be pending when Unwatch drops it
	src.Unwatch(a)
	src.Unwatch(a)
	testenv.EventuallyTrue(t, "a's watch closed", func() bool { return src.Stats().WatchesOpen == 3 })
	events := src.Stats().Events
	writeService(t, writer, service(a, 4, 0), 3, 1)
	b2 := service(b, 5, 0)
	writeService(t, writer, b2, 2, 1)
	rec.waitFor(b, "b update", hasHash(b2))
	rec.poll()
	if len(rec.got[a]) != 1 {
		t.Fatalf("events for a after Unwatch: %v", rec.got[a][1:])
	}
	if d := src.Stats().Events - events; d != 1 {
		t.Fatalf("%d events queued after Unwatch, want 1 (b)", d)
	}

	src.Watch(a) // watching again starts over
	rec.waitFor(a, "a again", hasHash(service(a, 4, 0)))
}

func TestCompactedWatchRelists(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	cc := newCountingClient(testenv.Client(t, srv.Endpoints()))
	put(t, writer, space.Generation(), "g1")
	a := keyspace.Service{Namespace: "ns", Name: "a"}
	a1 := service(a, 1500, 0) // two slices
	writeService(t, writer, a1, 1, 0)

	src := runSource(t, cc, Options{})
	rec := newRecorder(t, src)
	release := cc.pauseServiceWatches()
	src.Watch(a)
	rec.waitFor(a, "initial state", hasHash(a1))
	testenv.EventuallyTrue(t, "the watch to be held back", func() bool { return cc.parkedWatches() == 1 })

	// While the watch is broken: two updates, then a compaction past them.
	writeService(t, writer, service(a, 1200, 1), 2, 2)
	a3 := service(a, 3, 2)
	writeService(t, writer, a3, 3, 2) // endpoints/1 vanishes
	resp, err := writer.Get(ctxT(t), space.Spec(a))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Compact(ctxT(t), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	release()

	ev := rec.waitFor(a, "state after re-list", hasHash(a3))
	if len(ev.State.Slices) != 1 || ev.Revision < resp.Header.Revision {
		t.Fatalf("after re-list: %d slices at revision %d", len(ev.State.Slices), ev.Revision)
	}
	st := src.Stats()
	if st.Compactions != 1 || st.Relists != 1 || st.Events != 2 {
		t.Fatalf("stats %+v: want 1 compaction, 1 re-list, 2 events (initial, converged)", st)
	}
	// The re-list swept endpoints/1: a spec that announces two slices
	// again, written alone, leaves the service incomplete, not assembled
	// with the stale slice.
	broken := service(a, 1500, 9).Spec
	b, err := model.Marshal(broken)
	if err != nil {
		t.Fatal(err)
	}
	put(t, writer, space.Spec(a), string(b))
	a5 := service(a, 4, 3)
	writeService(t, writer, a5, 5, 1)
	rec.waitFor(a, "update after re-list", hasHash(a5))
	if st := src.Stats(); st.Events != 3 {
		t.Fatalf("stats %+v: want 3 events (initial, converged, update)", st)
	}
}

func TestRemovalWaitsForSyncedMarker(t *testing.T) {
	srv, writer := startG1(t)
	svcs := servicesInShards("ns", 3, keyspace.DefaultShards)
	a, b, c := svcs[0], svcs[1], svcs[2]
	shard := shardOf
	for _, s := range svcs {
		writeService(t, writer, service(s, 2, 0), 1, 0)
	}
	putMarker(t, writer, shard(b), "g1", 1) // only b's shard is synced

	src := runSource(t, testenv.Client(t, srv.Endpoints()), Options{})
	rec := newRecorder(t, src)
	for _, s := range svcs {
		src.Watch(s)
		rec.waitFor(s, "initial state", hasHash(service(s, 2, 0)))
	}

	// b's shard is synced in this generation: its deletion is real.
	deleteService(t, writer, b)
	ev := rec.waitFor(b, "removal", isRemoval)
	if ev.Revision == 0 {
		t.Fatal("removal without revision")
	}

	// a's and c's shards are not: their deletions wait.
	deleteService(t, writer, a)
	deleteService(t, writer, c)
	testenv.EventuallyTrue(t, "two deferred removals", func() bool { return src.Stats().Deferred == 2 })
	rec.poll()
	if len(rec.got[a]) != 1 || len(rec.got[c]) != 1 {
		t.Fatalf("removal before the shard was synced: a %v, c %v", rec.got[a], rec.got[c])
	}

	// A marker of another generation does not confirm anything; c's
	// marker, written after it, shows the control loop went past it.
	putMarker(t, writer, shard(a), "g0", 1)
	putMarker(t, writer, shard(c), "g1", 0)
	rec.waitFor(c, "removal once synced", isRemoval)
	rec.poll()
	if len(rec.got[a]) != 1 || src.Stats().Deferred != 1 {
		t.Fatalf("a removed by a stale marker: %v", rec.got[a])
	}

	putMarker(t, writer, shard(a), "g1", 0)
	rec.waitFor(a, "removal once synced", isRemoval)
	st := src.Stats()
	if st.DeferredDeletes != 2 || st.Deferred != 0 || st.Events != 6 {
		t.Fatalf("stats %+v: want 2 deferred deletes, none pending, 6 events", st)
	}
}

// TestRemovalDeferredThenRecreated: a service deleted and written again
// before its shard is synced was never removed, and identical content
// queues nothing.
func TestRemovalDeferredThenRecreated(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	put(t, writer, space.Generation(), "g1")
	a := keyspace.Service{Namespace: "ns", Name: "a"}
	writeService(t, writer, service(a, 2, 0), 1, 0)
	src := runSource(t, testenv.Client(t, srv.Endpoints()), Options{})
	rec := newRecorder(t, src)
	src.Watch(a)
	rec.waitFor(a, "initial state", hasHash(service(a, 2, 0)))

	deleteService(t, writer, a)
	testenv.EventuallyTrue(t, "deferred removal", func() bool { return src.Stats().Deferred == 1 })
	writeService(t, writer, service(a, 2, 0), 2, 0)
	testenv.EventuallyTrue(t, "deferral cleared", func() bool { return src.Stats().Deferred == 0 })
	a3 := service(a, 3, 0)
	writeService(t, writer, a3, 3, 1)
	rec.waitFor(a, "update", hasHash(a3))
	if n := len(rec.got[a]); n != 2 || src.Stats().Events != 2 {
		t.Fatalf("events %v: want initial state and update only", rec.got[a])
	}
}

func TestIdenticalRewriteQueuesNothing(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	put(t, writer, space.Generation(), "g1")
	a := keyspace.Service{Namespace: "ns", Name: "a"}
	writeService(t, writer, service(a, 1100, 0), 1, 0)
	src := runSource(t, testenv.Client(t, srv.Endpoints()), Options{})
	rec := newRecorder(t, src)
	src.Watch(a)
	rec.waitFor(a, "initial state", hasHash(service(a, 1100, 0)))

	for rev := uint64(2); rev <= 4; rev++ {
		writeService(t, writer, service(a, 1100, 0), rev, 2) // same content, new revision and time
	}
	a5 := service(a, 1100, 5)
	writeService(t, writer, a5, 5, 2)
	rec.waitFor(a, "update", hasHash(a5))
	st := src.Stats()
	if st.Events != 2 || st.WatchEvents != 4*3 {
		t.Fatalf("stats %+v: want 2 events for 12 watch events", st)
	}
}

func TestIncompleteServiceIsHeld(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	put(t, writer, space.Generation(), "g1")
	putMarker(t, writer, 0, "g1", 1)
	a := keyspace.Service{Namespace: "ns", Name: "a"}
	full := service(a, 1500, 0)
	// A spec announcing two slices with only the first written.
	writeService(t, writer, full, 1, 0)
	deleteSlice := func() {
		if _, err := writer.Delete(ctxT(t), space.Slice(a, 1)); err != nil {
			t.Fatal(err)
		}
	}
	deleteSlice()

	src := runSource(t, testenv.Client(t, srv.Endpoints()), Options{Shards: 1})
	rec := newRecorder(t, src)
	src.Watch(a)
	testenv.EventuallyTrue(t, "the list", func() bool { return src.Stats().Lists == 1 })
	writeService(t, writer, full, 2, 0)
	rec.waitFor(a, "complete state", hasHash(full))
	deleteSlice() // even with the shard synced: fewer endpoints only through a new spec
	testenv.EventuallyTrue(t, "the delete applied", func() bool { return src.Stats().WatchEvents == 4 })
	small := service(a, 10, 0)
	writeService(t, writer, small, 3, 2)
	rec.waitFor(a, "smaller state", hasHash(small))
	if st := src.Stats(); st.Events != 2 {
		t.Fatalf("stats %+v: want 2 events (complete, smaller)", st)
	}
}

// TestGenerationChangeAfterWipe: etcd is wiped and rebuilt gradually by a
// relay of a new generation. Nothing is removed before the new generation's
// marker of the service's shard; what is rewritten identically queues nothing.
//
// The rebuild is found either by the probe made when the source's etcd
// connection comes back (ticks an hour apart), or, for a client that hides
// its connection state, by ProbeInterval's ticks.
func TestGenerationChangeAfterWipe(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd")
	}
	for _, d := range []detector{onReconnect, onTicks} {
		t.Run(d.String(), func(t *testing.T) { testGenerationChangeAfterWipe(t, d) })
	}
}

func testGenerationChangeAfterWipe(t *testing.T, d detector) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	put(t, writer, space.Generation(), "g1")
	svcs := servicesInShards("ns", 3, keyspace.DefaultShards)
	a, b, cs := svcs[0], svcs[1], svcs[2]
	shard := func(s keyspace.Service) int { return keyspace.Shard(s, keyspace.DefaultShards) }
	for _, s := range svcs {
		writeService(t, writer, service(s, 3, 0), 1, 0)
		putMarker(t, writer, shard(s), "g1", 1)
	}
	// Push the old etcd's revision beyond what the new one will reach.
	for i := range 30 {
		put(t, writer, space.Prefix()+"relays/r0", strings.Repeat("x", i))
	}

	src, px := runSourceViaDetector(t, srv, Options{}, d)
	rec := watchLoaded(t, src, svcs)
	events := src.Stats().Events

	// Wipe: a new, empty etcd on the same address.
	writer = replaceEtcd(t, srv, px, embedetcd.Options{})
	put(t, writer, space.Generation(), "g2")
	writeService(t, writer, service(a, 3, 0), 1, 0) // identical
	c2 := service(cs, 4, 0)
	writeService(t, writer, c2, 1, 0) // changed
	rec.waitFor(cs, "c's new state", hasHash(c2))
	testenv.EventuallyTrue(t, "b's removal deferred", func() bool {
		st := src.Stats()
		return st.GenerationChanges >= 1 && st.Deferred == 1
	})
	a2 := service(a, 5, 0)
	writeService(t, writer, a2, 2, 1)
	rec.waitFor(a, "a's new state", hasHash(a2))
	if d := src.Stats().Events - events; d != 2 {
		t.Fatalf("%d events queued since the wipe, want 2 (c, a changed): %v", d, rec.got)
	}

	putMarker(t, writer, shard(a), "g2", 1)
	putMarker(t, writer, shard(cs), "g2", 1)
	putMarker(t, writer, shard(b), "g2", 0)
	rec.waitFor(b, "b's removal", isRemoval)
	rec.poll()
	for _, s := range []keyspace.Service{a, cs} {
		if last := rec.got[s][len(rec.got[s])-1]; last.State == nil {
			t.Fatalf("%s removed", s)
		}
	}
	if st := src.Stats(); st.Events-events != 3 || st.Deferred != 0 {
		t.Fatalf("stats %+v: want 3 events since the wipe, nothing deferred", st)
	}
	if st := src.Stats(); d == onReconnect && (st.Reconnects == 0 || st.Probes == 0) {
		t.Fatalf("stats %+v: want the rebuild found by a probe at reconnection", st)
	}
}

// TestGenerationChangeInPlace: a relay empties etcd and starts a new
// generation at one revision without restarting it. The service watches may
// see the deletions before the control loop sees the generation; the list
// that decides a removal reads the generation and marker itself.
func TestGenerationChangeInPlace(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	put(t, writer, space.Generation(), "g1")
	svcs := servicesInShards("ns", 2, keyspace.DefaultShards)
	a, b := svcs[0], svcs[1]
	shard := func(s keyspace.Service) int { return keyspace.Shard(s, keyspace.DefaultShards) }
	for _, s := range svcs {
		writeService(t, writer, service(s, 3, 0), 1, 0)
		putMarker(t, writer, shard(s), "g1", 1)
	}
	src := runSource(t, testenv.Client(t, srv.Endpoints()), Options{})
	rec := newRecorder(t, src)
	for _, s := range svcs {
		src.Watch(s)
		rec.waitFor(s, "initial state", hasHash(service(s, 3, 0)))
	}
	// The control loop has loaded g1 (its two watches are open): otherwise
	// it could first read g2 and rightly see no change.
	testenv.EventuallyTrue(t, "control loop loaded", func() bool { return src.Stats().WatchesOpen == int64(len(svcs)+2) })

	if _, err := writer.Txn(ctxT(t)).Then(
		clientv3.OpDelete(space.ServicesPrefix(), clientv3.WithPrefix()),
		clientv3.OpDelete(space.SyncedPrefix(), clientv3.WithPrefix()),
		clientv3.OpPut(space.Generation(), "g2"),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	writeService(t, writer, service(a, 3, 0), 1, 0)
	putMarker(t, writer, shard(a), "g2", 1)
	testenv.EventuallyTrue(t, "b deferred in g2", func() bool {
		st := src.Stats()
		return st.GenerationChanges == 1 && st.Deferred == 1
	})
	rec.poll()
	if len(rec.got[a]) != 1 || len(rec.got[b]) != 1 {
		t.Fatalf("events during the rebuild: a %v, b %v", rec.got[a], rec.got[b])
	}
	putMarker(t, writer, shard(b), "g2", 0)
	rec.waitFor(b, "b's removal", isRemoval)
	if st := src.Stats(); st.Events != 3 {
		t.Fatalf("stats %+v: want 3 events (2 initial, b's removal)", st)
	}
}

func TestNextCoalescesPerService(t *testing.T) {
	s := New(nil, Options{})
	a, b := keyspace.Service{Namespace: "ns", Name: "a"}, keyspace.Service{Namespace: "ns", Name: "b"}
	wa, wb := newWatch(a, 0, limits{}), newWatch(b, 0, limits{})
	s.watches[a], s.watches[b] = wa, wb
	for rev := int64(1); rev <= 100; rev++ {
		s.emit(wa, Event{Service: a, Revision: rev})
	}
	s.emit(wb, Event{Service: b, Revision: 7})
	s.emit(wa, Event{Service: a, Revision: 101})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := s.Next(ctx, 1)
	if err != nil || len(evs) != 1 || evs[0].Service != a || evs[0].Revision != 101 {
		t.Fatalf("first Next = %v, %v; want a at 101", evs, err)
	}
	evs, err = s.Next(ctx, 0)
	if err != nil || len(evs) != 1 || evs[0].Service != b {
		t.Fatalf("second Next = %v, %v; want b", evs, err)
	}
	if st := s.Stats(); st.Events != 102 || st.Coalesced != 100 || st.Delivered != 2 {
		t.Fatalf("stats %+v", st)
	}
	s.emit(wa, Event{Service: a, Revision: 102})
	s.Unwatch(a)
	if s.emit(wa, Event{Service: a, Revision: 103}) {
		t.Fatal("emitted for an unwatched service")
	}
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if evs, err := s.Next(short, 0); err == nil {
		t.Fatalf("Next after Unwatch returned %v", evs)
	}
}

// TestTakeAndReady: Take returns what Next would without waiting, Ready
// signals after an event is queued, and Queued counts the services
// waiting.
func TestTakeAndReady(t *testing.T) {
	s := New(nil, Options{})
	a, b := keyspace.Service{Namespace: "ns", Name: "a"}, keyspace.Service{Namespace: "ns", Name: "b"}
	wa, wb := newWatch(a, 0, limits{}), newWatch(b, 0, limits{})
	s.watches[a], s.watches[b] = wa, wb
	if evs := s.Take(0); len(evs) != 0 || s.Queued() != 0 {
		t.Fatalf("Take on an empty queue = %v, Queued %d", evs, s.Queued())
	}
	s.emit(wa, Event{Service: a, Revision: 1})
	s.emit(wb, Event{Service: b, Revision: 2})
	s.emit(wa, Event{Service: a, Revision: 3})
	select {
	case <-s.Ready():
	default:
		t.Fatal("Ready did not signal after events were queued")
	}
	if n := s.Queued(); n != 2 {
		t.Fatalf("Queued = %d, want 2 (latest wins per service)", n)
	}
	evs := s.Take(1)
	if len(evs) != 1 || evs[0].Service != a || evs[0].Revision != 3 {
		t.Fatalf("Take(1) = %v, want a at 3", evs)
	}
	// One left: Take signals Ready again so that a consumer comes back.
	select {
	case <-s.Ready():
	default:
		t.Fatal("Ready did not signal with an event left")
	}
	if evs := s.Take(0); len(evs) != 1 || evs[0].Service != b || s.Queued() != 0 {
		t.Fatalf("Take(0) = %v, Queued %d; want b, then none", evs, s.Queued())
	}
	if st := s.Stats(); st.Delivered != 2 {
		t.Fatalf("stats %+v: want 2 delivered", st)
	}
}

// TestOnResponseReportsDeliveries: Options.OnResponse sees every watch
// response that brings a watched service new events, with the revision of
// the event the Source then emits, and no response for the initial list.
func TestOnResponseReportsDeliveries(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	put(t, writer, space.Generation(), "g1")
	a := keyspace.Service{Namespace: "ns", Name: "a"}
	writeService(t, writer, service(a, 3, 0), 1, 0)

	type delivery struct {
		svc keyspace.Service
		rev int64
	}
	var mu sync.Mutex
	var got []delivery
	src := runSource(t, testenv.Client(t, srv.Endpoints()), Options{OnResponse: func(svc keyspace.Service, rev int64, at time.Time) {
		if at.IsZero() {
			t.Errorf("OnResponse(%s, %d) with a zero time", svc, rev)
		}
		mu.Lock()
		got = append(got, delivery{svc, rev})
		mu.Unlock()
	}})
	rec := newRecorder(t, src)
	src.Watch(a)
	rec.waitFor(a, "initial state", hasHash(service(a, 3, 0)))
	a2 := service(a, 4, 5)
	writeService(t, writer, a2, 2, 1)
	ev := rec.waitFor(a, "update", hasHash(a2))
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != (delivery{a, ev.Revision}) {
		t.Fatalf("OnResponse calls %v, want one for %s at revision %d", got, a, ev.Revision)
	}
}

// TestListedReportsWhatTheListFound: Listed tells a service not read yet
// from one read present, and one read absent from a synced shard (known
// absent) from one read absent before its shard was synced (unknown).
func TestListedReportsWhatTheListFound(t *testing.T) {
	srv, writer := startG1(t)
	svcs := servicesInShards("ns", 3, keyspace.DefaultShards)
	present, gone, early := svcs[0], svcs[1], svcs[2]
	writeService(t, writer, service(present, 1, 0), 1, 0)
	putMarker(t, writer, shardOf(present), "g1", 1)
	putMarker(t, writer, shardOf(gone), "g1", 0)
	putMarker(t, writer, shardOf(early), "g0", 0) // another generation's

	src := runSource(t, testenv.Client(t, srv.Endpoints()), Options{})
	if listed, absent := src.Listed(present); listed || absent {
		t.Fatalf("unwatched service: listed %v absent %v", listed, absent)
	}
	for _, s := range svcs {
		src.Watch(s)
	}
	listed := func(s keyspace.Service) bool { l, _ := src.Listed(s); return l }
	testenv.EventuallyTrue(t, "every service listed", func() bool {
		return listed(present) && listed(gone) && listed(early)
	})
	for _, c := range []struct {
		svc  keyspace.Service
		want bool
	}{{present, false}, {gone, true}, {early, false}} {
		if _, absent := src.Listed(c.svc); absent != c.want {
			t.Errorf("%s: absent %v, want %v", c.svc, absent, c.want)
		}
	}
}

// txnCounter counts the transactions made through a client.
type txnCounter struct {
	*clientv3.Client
	n atomic.Int64
}

func (c *txnCounter) Txn(ctx context.Context) clientv3.Txn {
	c.n.Add(1)
	return c.Client.Txn(ctx)
}

// TestFirstListsReadTogether: services watched before Run are listed with
// one transaction (besides the control loop's), each as its own list
// would, present or absent.
func TestFirstListsReadTogether(t *testing.T) {
	srv, writer := startG1(t)
	svcs := servicesInShards("ns", 10, keyspace.DefaultShards)
	for _, s := range svcs[:9] {
		writeService(t, writer, service(s, 2, 0), 1, 0)
		putMarker(t, writer, shardOf(s), "g1", 1)
	}
	putMarker(t, writer, shardOf(svcs[9]), "g1", 0)

	tc := &txnCounter{Client: testenv.Client(t, srv.Endpoints())}
	opts := Options{Cluster: testCluster, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	src := New(tc, opts)
	for _, s := range svcs {
		src.Watch(s)
	}
	run := testenv.Run(t, src.Run)
	defer run.Stop()
	rec := newRecorder(t, src)
	for _, s := range svcs[:9] {
		rec.waitFor(s, "initial state", hasHash(service(s, 2, 0)))
	}
	testenv.EventuallyTrue(t, "absent service listed", func() bool { _, absent := src.Listed(svcs[9]); return absent })
	if st := src.Stats(); st.Lists != 10 || st.Relists != 0 {
		t.Errorf("stats %+v: want 10 lists", st)
	}
	if n := tc.n.Load(); n != 2 {
		t.Errorf("%d transactions; want 2 (the control loop's load, the first lists)", n)
	}
}

// TestPresentFollowsTheSpec: Present is true for a service whose watch
// holds its spec (listed, or written since) and false once a watch event
// deleted it.
func TestPresentFollowsTheSpec(t *testing.T) {
	srv, writer := startG1(t)
	svcs := servicesInShards("ns", 2, keyspace.DefaultShards)
	listedPresent, later := svcs[0], svcs[1]
	writeService(t, writer, service(listedPresent, 1, 0), 1, 0)
	putMarker(t, writer, shardOf(listedPresent), "g1", 1)

	src := runSource(t, testenv.Client(t, srv.Endpoints()), Options{})
	if src.Present(listedPresent) {
		t.Fatal("unwatched service present")
	}
	rec := newRecorder(t, src)
	src.Watch(listedPresent)
	src.Watch(later)
	rec.waitFor(listedPresent, "initial state", hasHash(service(listedPresent, 1, 0)))
	if !src.Present(listedPresent) {
		t.Error("listed service with a spec not present")
	}
	testenv.EventuallyTrue(t, "later listed", func() bool { l, _ := src.Listed(later); return l })
	if src.Present(later) {
		t.Error("service without a spec present")
	}

	writeService(t, writer, service(later, 1, 10), 1, 0)
	rec.waitFor(later, "state written after the list", hasHash(service(later, 1, 10)))
	if !src.Present(later) {
		t.Error("service written after its list not present")
	}

	deleteService(t, writer, listedPresent)
	testenv.EventuallyTrue(t, "deleted service not present", func() bool { return !src.Present(listedPresent) })
	if listed, _ := src.Listed(listedPresent); !listed {
		t.Error("deleted by a watch event: not listed")
	}
}
