package etcdsink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// fixture is a running Sink on a fresh embedded etcd.
type fixture struct {
	srv  *embedetcd.Server
	c    *clientv3.Client
	sink *Sink
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	s := New(c, opts)
	testenv.Run(t, s.Run)
	return &fixture{srv: srv, c: c, sink: s}
}

// settle waits until the sink has processed n more services than when
// before was taken (written or skipped).
func (f *fixture) settle(t *testing.T, before Stats, skipped uint64) {
	t.Helper()
	testenv.EventuallyTrue(t, "sink to process the change", func() bool {
		st := f.sink.Stats()
		return st.Skipped >= before.Skipped+skipped && st.QueueDepth == 0
	})
}

func TestInitialWrite(t *testing.T) {
	f := newFixture(t, testOptions())
	observed := time.Unix(1_700_000_000, 42)
	const n = 20
	want := map[keyspace.Service]*model.Service{}
	for i := range n {
		key := svcName(i)
		svc := newService(key, []string{vip(i)}, 1+i%3, 0)
		want[key] = svc
		f.sink.Set(key, svc, observed)
	}
	big := keyspace.Service{Namespace: "big", Name: "many"}
	want[big] = newService(big, []string{vip(500), vip(501)}, 2500, 0) // 3 slices
	f.sink.Set(big, want[big], observed)

	testenv.EventuallyTrue(t, "all specs written", func() bool {
		return countPrefix(t, f.c, space.ServicesPrefix()) == int64(2*n+4)
	})
	for key, svc := range want {
		spec := decodeSpec(t, f.c, key)
		if spec.GetRevision() != 1 || spec.GetContentHash() != svc.Spec.GetContentHash() || spec.GetObservedUnixNano() != observed.UnixNano() {
			t.Errorf("%s spec: revision %d hash %q observed %d", key, spec.GetRevision(), spec.GetContentHash(), spec.GetObservedUnixNano())
		}
		if int(spec.GetEndpointSlices()) != len(svc.Slices) {
			t.Errorf("%s: endpoint_slices %d, want %d", key, spec.GetEndpointSlices(), len(svc.Slices))
		}
		for i, sl := range svc.Slices {
			got := decodeSlice(t, f.c, key, i)
			if got.GetRevision() != 1 || got.GetContentHash() != sl.GetContentHash() || len(got.GetEndpoints()) != len(sl.GetEndpoints()) {
				t.Errorf("%s slice %d: revision %d hash %q, %d endpoints", key, i, got.GetRevision(), got.GetContentHash(), len(got.GetEndpoints()))
			}
		}
		for _, ip := range svc.Spec.GetVips() {
			if v := get(t, f.c, space.VIP(ip)); v == nil || string(v.value) != key.String() {
				t.Errorf("vips/%s = %v, want %s", ip, v, key)
			}
		}
	}
	if g := get(t, f.c, space.Generation()); g == nil || string(g.value) != f.sink.Stats().Generation {
		t.Errorf("generation %v, sink says %q", g, f.sink.Stats().Generation)
	}
	checkMetricsMatchStats(t, f.sink)
}

// checkMetricsMatchStats gathers the sink's collectors and compares them
// with its Stats snapshot: one storage, two views.
func checkMetricsMatchStats(t *testing.T, s *Sink) {
	t.Helper()
	f := gatherSink(t, s)
	st := s.Stats()
	if st.Txns == 0 {
		t.Fatal("no transactions counted")
	}
	for name, want := range map[string]float64{
		"meshrelay_relay_etcd_txns_total":          float64(st.Txns),
		"meshrelay_relay_etcd_puts_total":          float64(st.Puts),
		"meshrelay_relay_etcd_written_bytes_total": float64(st.Bytes),
	} {
		if got := f[name]; got != want {
			t.Errorf("%s = %v, Stats says %v", name, got, want)
		}
	}
	if got := f["meshrelay_relay_etcd_txn_duration_seconds"]; got != float64(st.Txns) {
		t.Errorf("txn duration histogram holds %v samples, want one per transaction (%d)", got, st.Txns)
	}
}

// gatherSink registers s's metrics in a fresh registry and returns
// each metric's value (a histogram's sample count).
func gatherSink(t *testing.T, s *Sink) map[string]float64 {
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Metrics()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.Counter != nil:
			out[mf.GetName()] = m.Counter.GetValue()
		case m.Histogram != nil:
			out[mf.GetName()] = float64(m.Histogram.GetSampleCount())
		case m.Gauge != nil:
			out[mf.GetName()] = m.Gauge.GetValue()
		}
	}
	return out
}

func TestIdenticalSetWritesNothing(t *testing.T) {
	f := newFixture(t, testOptions())
	key := svcName(1)
	svc := newService(key, []string{vip(1)}, 5, 0)
	f.sink.Set(key, svc, time.Now())
	// Counted as written, not only visible in etcd: the counters move once
	// the transaction's answer is back, which can be after a reader sees it.
	testenv.EventuallyTrue(t, "service written", func() bool {
		return get(t, f.c, space.Spec(key)) != nil && f.sink.Stats().Txns > 0
	})
	f.settle(t, f.sink.Stats(), 0)

	rev := headerRevision(t, f.c)
	before := f.sink.Stats()
	// The same content, rebuilt from scratch, pushed three times.
	for range 3 {
		f.sink.Set(key, newService(key, []string{vip(1)}, 5, 0), time.Now())
		f.settle(t, f.sink.Stats(), 1)
	}
	if got := headerRevision(t, f.c); got != rev {
		t.Fatalf("identical Set moved etcd from revision %d to %d", rev, got)
	}
	if st := f.sink.Stats(); st.Txns != before.Txns || st.Puts != before.Puts {
		t.Fatalf("identical Set wrote: before %+v after %+v", before, st)
	}
}

func TestOneSliceChangeWritesOneKey(t *testing.T) {
	f := newFixture(t, testOptions())
	key := svcName(2)
	svc := newService(key, []string{vip(2)}, 2500, 0) // slices 0..2
	f.sink.Set(key, svc, time.Now())
	testenv.EventuallyTrue(t, "service written", func() bool { return get(t, f.c, space.Slice(key, 2)) != nil })
	f.settle(t, f.sink.Stats(), 0)

	keys := []string{space.Spec(key), space.Slice(key, 0), space.Slice(key, 1), space.Slice(key, 2), space.VIP(vip(2))}
	mod := map[string]int64{}
	for _, k := range keys {
		mod[k] = get(t, f.c, k).modRevision
	}
	rev := headerRevision(t, f.c)

	changed := withEndpointPort(svc, 1500, 9999) // in slice 1
	f.sink.Set(key, changed, time.Now())
	testenv.EventuallyTrue(t, "slice 1 rewritten", func() bool { return get(t, f.c, space.Slice(key, 1)).modRevision != mod[space.Slice(key, 1)] })

	if got := headerRevision(t, f.c); got != rev+1 {
		t.Errorf("one slice change took etcd from revision %d to %d, want one transaction", rev, got)
	}
	for _, k := range keys {
		got := get(t, f.c, k).modRevision
		if (k == space.Slice(key, 1)) != (got != mod[k]) {
			t.Errorf("%s: mod revision %d -> %d", k, mod[k], got)
		}
	}
	if sl := decodeSlice(t, f.c, key, 1); sl.GetRevision() != 2 || sl.GetEndpoints()[500].GetPort() != 9999 {
		t.Errorf("slice 1: revision %d, endpoint port %d", sl.GetRevision(), sl.GetEndpoints()[500].GetPort())
	}
	if spec := decodeSpec(t, f.c, key); spec.GetRevision() != 1 {
		t.Errorf("unchanged spec has revision %d, want 1", spec.GetRevision())
	}
}

func TestSliceCountShrinkDeletesExtraKeys(t *testing.T) {
	f := newFixture(t, testOptions())
	key := svcName(3)
	f.sink.Set(key, newService(key, nil, 2500, 0), time.Now())
	testenv.EventuallyTrue(t, "three slices", func() bool { return countPrefix(t, f.c, space.ServicePrefix(key)) == 4 })

	f.sink.Set(key, newService(key, nil, 10, 0), time.Now())
	testenv.EventuallyTrue(t, "extra slices deleted", func() bool { return countPrefix(t, f.c, space.ServicePrefix(key)) == 2 })
	spec := decodeSpec(t, f.c, key)
	if spec.GetEndpointSlices() != 1 || spec.GetRevision() != 2 {
		t.Errorf("spec: endpoint_slices %d revision %d, want 1 and 2", spec.GetEndpointSlices(), spec.GetRevision())
	}
	if sl := decodeSlice(t, f.c, key, 0); len(sl.GetEndpoints()) != 10 || sl.GetRevision() != 2 {
		t.Errorf("slice 0: %d endpoints revision %d", len(sl.GetEndpoints()), sl.GetRevision())
	}
}

// TestLoadIgnoresForeignSliceKeys: keys that are not canonical, bounded
// slice keys are not the relay's: loading them allocates nothing by their
// index, and a reload deletes the stale canonical slice beyond the desired
// count but leaves the foreign keys to the service's prefix delete.
func TestLoadIgnoresForeignSliceKeys(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	key := svcName(4)
	huge := space.ServicePrefix(key) + "endpoints/100000000"
	padded := space.ServicePrefix(key) + "endpoints/010"
	stale := space.Slice(key, 5)
	for _, k := range []string{huge, padded, stale} {
		if _, err := c.Put(context.Background(), k, "x"); err != nil {
			t.Fatal(err)
		}
	}
	s := New(c, testOptions())
	testenv.Run(t, s.Run)
	s.Set(key, newService(key, nil, 10, 0), time.Now())
	testenv.EventuallyTrue(t, "stale slice deleted", func() bool { return get(t, c, space.Slice(key, 0)) != nil && get(t, c, stale) == nil })
	if get(t, c, huge) == nil || get(t, c, padded) == nil {
		t.Error("a key the relay does not own was deleted by a slice delete")
	}
	if st := s.Stats(); st.Generation == "" {
		t.Errorf("stats: %+v", st)
	}
	s.Set(key, nil, time.Now())
	testenv.EventuallyTrue(t, "service deleted with its prefix", func() bool { return countPrefix(t, c, space.ServicePrefix(key)) == 0 })
}

func TestVIPIndex(t *testing.T) {
	f := newFixture(t, testOptions())
	a, b := svcName(10), svcName(11)
	vipValue := func(ip string) string {
		if v := get(t, f.c, space.VIP(ip)); v != nil {
			return string(v.value)
		}
		return ""
	}

	f.sink.Set(a, newService(a, []string{vip(1)}, 1, 0), time.Now())
	testenv.EventuallyTrue(t, "vip 1 -> a", func() bool { return vipValue(vip(1)) == a.String() })

	// Add a second VIP.
	f.sink.Set(a, newService(a, []string{vip(1), vip(2)}, 1, 0), time.Now())
	testenv.EventuallyTrue(t, "vip 2 -> a", func() bool { return vipValue(vip(2)) == a.String() })

	// Remove the first.
	f.sink.Set(a, newService(a, []string{vip(2)}, 1, 0), time.Now())
	testenv.EventuallyTrue(t, "vip 1 removed", func() bool { return vipValue(vip(1)) == "" })

	// b also lists vip 2: a keeps the entry while it lists it...
	f.sink.Set(b, newService(b, []string{vip(2)}, 1, 0), time.Now())
	testenv.EventuallyTrue(t, "b written", func() bool { return get(t, f.c, space.Spec(b)) != nil })
	if got := vipValue(vip(2)); got != a.String() {
		t.Fatalf("vip 2 = %q while a still lists it, want %s", got, a)
	}
	// ...and b gets it when a is deleted.
	f.sink.Set(a, nil, time.Now())
	testenv.EventuallyTrue(t, "a deleted", func() bool { return countPrefix(t, f.c, space.ServicePrefix(a)) == 0 })
	if got := vipValue(vip(2)); got != b.String() {
		t.Fatalf("vip 2 = %q after a's delete, want %s", got, b)
	}
	f.sink.Set(b, nil, time.Now())
	testenv.EventuallyTrue(t, "b's VIP removed", func() bool { return countPrefix(t, f.c, space.VIPsPrefix()) == 0 })
}

func TestRestartWritesNothing(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	const n = 50
	desired := make([]*model.Service, n)
	present := make([]keyspace.Service, n)
	for i := range n {
		present[i] = svcName(i)
		desired[i] = newService(present[i], []string{vip(i)}, 1+i%4, 0)
	}
	run := func() (*Sink, *testenv.Running) {
		s := New(c, testOptions())
		for i, svc := range desired {
			s.Set(present[i], svc, time.Now())
		}
		s.Complete(present)
		r := testenv.Run(t, s.Run)
		waitSynced(t, s)
		return s, r
	}

	s1, r := run()
	if err := r.Stop(); err != nil || !errors.Is(r.Err(), context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", r.Err())
	}
	if st := s1.Stats(); st.Txns == 0 {
		t.Fatal("first relay wrote nothing")
	}
	rev := headerRevision(t, c)

	s2, _ := run()
	if got := headerRevision(t, c); got != rev {
		t.Fatalf("restart with unchanged state moved etcd from revision %d to %d (stats %+v)", rev, got, s2.Stats())
	}
	if st := s2.Stats(); st.Txns != 0 || st.Skipped != n {
		t.Fatalf("restarted sink: %d txns, %d skipped, want 0 and %d", st.Txns, st.Skipped, n)
	}
}

func TestCompleteSweepsAndWritesMarkers(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	opts := testOptions()

	// A previous relay left a, b and c in etcd.
	a, b, cc, d := svcName(20), svcName(21), svcName(22), svcName(23)
	old := New(c, opts)
	for i, key := range []keyspace.Service{a, b, cc} {
		old.Set(key, newService(key, []string{vip(20 + i)}, 2, 0), time.Now())
	}
	prev := testenv.Run(t, old.Run)
	testenv.EventuallyTrue(t, "previous relay's services", func() bool { return countPrefix(t, c, space.VIPsPrefix()) == 3 })
	if err := prev.Stop(); err != nil {
		t.Fatalf("previous relay's Run = %v", err)
	}

	s := New(c, opts)
	testenv.Run(t, s.Run)
	s.Set(a, newService(a, []string{vip(20)}, 2, 0), time.Now())
	s.Set(d, newService(d, []string{vip(23)}, 2, 0), time.Now())
	testenv.EventuallyTrue(t, "d written", func() bool { return get(t, c, space.Spec(d)) != nil })
	select {
	case <-s.Synced():
		t.Fatal("synced before Complete")
	default:
	}
	if countPrefix(t, c, space.ServicePrefix(b)) == 0 {
		t.Fatal("b deleted before Complete")
	}

	// Upstream is complete with a only: b and c (only in etcd) and d
	// (desired until now) go.
	s.Complete([]keyspace.Service{a})
	waitSynced(t, s)
	for _, gone := range []keyspace.Service{b, cc, d} {
		if n := countPrefix(t, c, space.ServicePrefix(gone)); n != 0 {
			t.Errorf("%s: %d keys left after Complete", gone, n)
		}
	}
	if n := countPrefix(t, c, space.VIPsPrefix()); n != 1 || get(t, c, space.VIP(vip(20))) == nil {
		t.Errorf("%d VIP entries after Complete, want only a's", n)
	}
	if get(t, c, space.Spec(a)) == nil {
		t.Error("a deleted by Complete")
	}

	total := 0
	for shard := range opts.Shards {
		v := get(t, c, space.Synced(shard))
		if v == nil {
			t.Fatalf("no synced/%d", shard)
		}
		m, err := keyspace.ParseMarker(v.value)
		if err != nil {
			t.Fatal(err)
		}
		if m.Shard != shard || m.Shards != opts.Shards || m.Cluster != space.Cluster() || m.HeldDeletions ||
			m.Relay != "relay-0" || m.Generation != s.Stats().Generation {
			t.Errorf("synced/%d = %s", shard, v.value)
		}
		if _, err := time.Parse(time.RFC3339, m.Time); err != nil {
			t.Errorf("synced/%d time: %v", shard, err)
		}
		if want := 0; keyspace.Shard(a, opts.Shards) == shard {
			want = 1
			if m.Services != want {
				t.Errorf("synced/%d counts %d services, want %d", shard, m.Services, want)
			}
		}
		total += m.Services
	}
	if total != 1 {
		t.Errorf("markers count %d services, want 1", total)
	}

	// A second Complete with nothing changed writes nothing.
	rev := headerRevision(t, c)
	before := s.Stats()
	s.Set(a, newService(a, []string{vip(20)}, 2, 0), time.Now())
	s.Complete([]keyspace.Service{a})
	f := &fixture{sink: s}
	f.settle(t, before, 1)
	if got := headerRevision(t, c); got != rev {
		t.Fatalf("second Complete moved etcd from revision %d to %d", rev, got)
	}
}

// TestEtcdOutage stops etcd while Sets arrive; the sink converges once etcd
// is back on the same port and data.
func TestEtcdOutage(t *testing.T) {
	outage := 10 * time.Second
	if testing.Short() {
		outage = 2 * time.Second
	}
	dir := shmDir(t)
	srv := testenv.StartEtcd(t, embedetcd.Options{Dir: dir})
	ep := srv.Endpoints()[0]
	c := testenv.Client(t, srv.Endpoints())
	s := New(c, testOptions())
	testenv.Run(t, s.Run)

	const n = 20
	for i := range n {
		s.Set(svcName(i), newService(svcName(i), []string{vip(i)}, 3, 0), time.Now())
	}
	testenv.EventuallyTrue(t, "initial write", func() bool { return countPrefix(t, c, space.VIPsPrefix()) == n })

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// While etcd is down: change every service, delete one.
	end := time.Now().Add(outage)
	for gen := 1; time.Now().Before(end); gen++ {
		for i := 1; i < n; i++ {
			s.Set(svcName(i), newService(svcName(i), []string{vip(i)}, 3, gen), time.Now())
		}
		time.Sleep(200 * time.Millisecond)
	}
	final := newService(svcName(5), []string{vip(5)}, 3, 1000)
	s.Set(svcName(5), final, time.Now())
	s.Set(svcName(0), nil, time.Now())

	testenv.StartEtcd(t, embedetcd.Options{Dir: dir, ClientURL: ep})
	testenv.EventuallyTrue(t, "convergence after the outage", func() bool {
		spec := get(t, c, space.Spec(svcName(5)))
		if spec == nil || countPrefix(t, c, space.ServicePrefix(svcName(0))) != 0 {
			return false
		}
		got, err := model.DecodeSpec(spec.value)
		return err == nil && got.GetContentHash() == final.Spec.GetContentHash() &&
			string(get(t, c, space.Slice(svcName(5), 0)).value) != "" &&
			s.Stats().QueueDepth == 0
	})
	if sl := decodeSlice(t, c, svcName(5), 0); sl.GetContentHash() != final.Slices[0].GetContentHash() {
		t.Errorf("slice after outage has hash %s, want %s", sl.GetContentHash(), final.Slices[0].GetContentHash())
	}
	if st := s.Stats(); st.Retries == 0 || st.LastError == "" {
		t.Errorf("outage left no trace in stats: %+v", st)
	}
	if s.Stats().GenerationChanges != 0 {
		t.Error("an outage of the same etcd counted as a generation change")
	}
}

// TestEtcdWiped replaces etcd by an empty one on the same port: the sink
// recreates the generation and rewrites everything.
func TestEtcdWiped(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	ep := srv.Endpoints()[0]
	c := testenv.Client(t, srv.Endpoints())
	s := New(c, testOptions())
	testenv.Run(t, s.Run)

	const n = 30
	present := make([]keyspace.Service, n)
	for i := range n {
		present[i] = svcName(i)
		s.Set(present[i], newService(present[i], []string{vip(i)}, 2, 0), time.Now())
	}
	s.Complete(present)
	waitSynced(t, s)
	gen := s.Stats().Generation
	keys := countPrefix(t, c, space.Prefix())

	srv.Close()
	testenv.StartEtcd(t, embedetcd.Options{ClientURL: ep}) // fresh dir: empty
	testenv.EventuallyTrue(t, "rewrite after wipe", func() bool {
		g := get(t, c, space.Generation())
		return g != nil && string(g.value) != gen && countPrefix(t, c, space.Prefix()) == keys
	})
	if st := s.Stats(); st.GenerationChanges == 0 || st.Generation == gen {
		t.Errorf("stats after wipe: %+v", st)
	}
	if m, err := keyspace.ParseMarker(get(t, c, space.Synced(0)).value); err != nil || m.Generation == gen {
		t.Errorf("synced/0 after wipe: %+v %v", m, err)
	}
}

// TestEtcdRestoredFromOlderCopy: an etcd restored from an older copy of its
// data keeps the generation id and the synced markers naming it, but its
// revision is below what the sink has seen; keyspace.Incarnation reports it
// and the sink replaces the generation (so the old markers count for
// nothing), rewrites what the older copy lacks, and writes new markers.
func TestEtcdRestoredFromOlderCopy(t *testing.T) {
	const gen = "restored-generation"
	putGen := func(c clientv3.KV) {
		t.Helper()
		if _, err := c.Put(context.Background(), space.Generation(), gen); err != nil {
			t.Fatal(err)
		}
	}
	// The older copy: the generation and a synced marker naming it, at
	// revisions 2 and 3.
	oldDir := shmDir(t)
	older := testenv.StartEtcd(t, embedetcd.Options{Dir: oldDir})
	oc := testenv.Client(t, older.Endpoints())
	putGen(oc)
	m, err := keyspace.EncodeMarker(keyspace.Marker{Shard: 0, Shards: testOptions().Shards, Cluster: space.Cluster(),
		Generation: gen, Relay: "relay-old", Time: keyspace.MarkerTime(time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oc.Put(context.Background(), space.Synced(0), string(m)); err != nil {
		t.Fatal(err)
	}
	older.Close()

	srv := testenv.StartEtcd(t, embedetcd.Options{})
	ep := srv.Endpoints()[0]
	c := testenv.Client(t, srv.Endpoints())
	putGen(c)
	s := New(c, testOptions())
	testenv.Run(t, s.Run)
	const n = 20
	present := make([]keyspace.Service, n)
	for i := range n {
		present[i] = svcName(i)
		s.Set(present[i], newService(present[i], []string{vip(i)}, 2, 0), time.Now())
	}
	s.Complete(present)
	waitSynced(t, s)
	for i := range 50 { // raise the revision well above the older copy's
		if _, err := c.Put(context.Background(), "/unrelated/key", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	rev := headerRevision(t, c)
	testenv.EventuallyTrue(t, "a generation check at the current revision", func() bool {
		s.genMu.Lock()
		defer s.genMu.Unlock()
		return s.incarnation.Revision() >= rev
	})
	keys := countPrefix(t, c, space.ServicesPrefix())

	srv.Close()
	testenv.StartEtcd(t, embedetcd.Options{ClientURL: ep, Dir: oldDir})
	testenv.EventuallyTrue(t, "rewrite after restore", func() bool { return countPrefix(t, c, space.ServicesPrefix()) == keys })
	// The restored generation is replaced, so that the older copy's
	// markers name an old one, and every marker is rewritten with the new.
	g := get(t, c, space.Generation())
	if g == nil || string(g.value) == gen {
		t.Fatalf("generation after restore: %v, want a new one", g)
	}
	if st := s.Stats(); st.GenerationChanges == 0 || st.Generation != string(g.value) {
		t.Errorf("stats after restore: %+v, want generation %s", st, g.value)
	}
	testenv.EventuallyTrue(t, "every marker names the new generation", func() bool {
		for shard := range testOptions().Shards {
			v := get(t, c, space.Synced(shard))
			if v == nil {
				return false
			}
			m, err := keyspace.ParseMarker(v.value)
			if err != nil || m.Generation != string(g.value) {
				return false
			}
		}
		return true
	})
}

// TestGenerationDeleted: deleting the generation key (etcdctl del) makes
// the sink recreate it and check everything.
func TestGenerationDeleted(t *testing.T) {
	opts := testOptions()
	opts.GenerationCheckInterval = time.Hour // the watch must notice
	f := newFixture(t, opts)
	key := svcName(1)
	f.sink.Set(key, newService(key, nil, 1, 0), time.Now())
	testenv.EventuallyTrue(t, "written", func() bool { return get(t, f.c, space.Spec(key)) != nil })
	gen := f.sink.Stats().Generation

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.c.Delete(ctx, space.Generation()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Delete(ctx, space.Spec(key)); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, "new generation and rewritten spec", func() bool {
		g := get(t, f.c, space.Generation())
		return g != nil && string(g.value) != gen && get(t, f.c, space.Spec(key)) != nil
	})
}

// TestLargeServiceWrittenInStages: a service needing more operations than
// one transaction allows is written whole, under slice generation 1, and
// the old-form slices of its previous state are deleted.
func TestLargeServiceWrittenInStages(t *testing.T) {
	opts := testOptions()
	opts.MaxTxnOps = 4
	f := newFixture(t, opts)
	big, small := svcName(1), svcName(2)
	f.sink.Set(big, newService(big, []string{vip(1)}, 1, 0), time.Now())
	f.sink.Set(small, newService(small, []string{vip(2)}, 1, 0), time.Now())
	f.sink.Complete([]keyspace.Service{big, small})
	waitSynced(t, f.sink)
	testenv.EventuallyTrue(t, "small generation-0 service", func() bool { return get(t, f.c, space.Slice(big, 0)) != nil })

	f.sink.Set(big, newService(big, []string{vip(1)}, 4001, 1), time.Now()) // spec + 5 slices + VIP
	testenv.EventuallyTrue(t, "big service flipped to generation 1", func() bool {
		sp := get(t, f.c, space.Spec(big))
		if sp == nil {
			return false
		}
		spec, err := model.DecodeSpec(sp.value)
		return err == nil && spec.GetSliceGeneration() == 1 && spec.GetEndpointSlices() == 5
	})
	testenv.EventuallyTrue(t, "old slices deleted", func() bool { return get(t, f.c, space.Slice(big, 0)) == nil })
	for i := range 5 {
		sl := get(t, f.c, space.SliceOf(big, 1, i))
		if sl == nil {
			t.Fatalf("slice %d of generation 1 missing", i)
		}
	}
	if n := countPrefix(t, f.c, space.ServicePrefix(big)); n != 6 {
		t.Fatalf("big service has %d keys, want spec + 5 slices", n)
	}
	if st := f.sink.Stats(); st.Oversized != 0 || f.sink.Unwritable() != 0 {
		t.Fatalf("stats: %+v, unwritable %d", st, f.sink.Unwritable())
	}
}

// TestOversizedServiceIsReported: a service etcd refuses even in stages
// (its spec alone is beyond the request limit) is reported (metric, error,
// Unwritable) and not partly written; other services are written.
func TestOversizedServiceIsReported(t *testing.T) {
	f := newFixture(t, testOptions())
	big, small := svcName(1), svcName(2)
	huge := newService(big, []string{vip(1)}, 1, 0)
	huge.Spec.Hostname = strings.Repeat("h", 2<<20) // beyond etcd's 1.5 MiB request limit
	huge.Spec.ContentHash = model.SpecHash(huge.Spec)
	f.sink.Set(big, huge, time.Now())
	f.sink.Set(small, newService(small, []string{vip(2)}, 1, 0), time.Now())
	f.sink.Complete([]keyspace.Service{big, small})
	waitSynced(t, f.sink)
	if get(t, f.c, space.Spec(small)) == nil {
		t.Fatal("small service not written")
	}
	if n := countPrefix(t, f.c, space.ServicePrefix(big)); n != 0 {
		t.Fatalf("oversized service partly written: %d keys", n)
	}
	if st := f.sink.Stats(); st.Oversized != 1 || st.LastError == "" || f.sink.Unwritable() != 1 {
		t.Fatalf("stats: %+v, unwritable %d", st, f.sink.Unwritable())
	}
}

func TestFenceFailureStopsRun(t *testing.T) {
	opts := testOptions()
	opts.Fence = func() []clientv3.Cmp {
		return []clientv3.Cmp{clientv3.Compare(clientv3.Value("fence"), "=", "relay-0")}
	}
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "fence", "relay-0"); err != nil {
		t.Fatal(err)
	}
	s := New(c, opts)
	r := testenv.Run(t, s.Run)
	key := svcName(1)
	s.Set(key, newService(key, nil, 1, 0), time.Now())
	testenv.EventuallyTrue(t, "written while holding the fence", func() bool { return get(t, c, space.Spec(key)) != nil })

	if _, err := c.Put(ctx, "fence", "relay-1"); err != nil {
		t.Fatal(err)
	}
	s.Set(key, newService(key, nil, 1, 1), time.Now())
	select {
	case <-r.Done():
		if err := r.Stop(); !errors.Is(err, ErrFenced) {
			t.Fatalf("Run = %v, want ErrFenced", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run kept going after losing the fence")
	}
	if sl := decodeSlice(t, c, key, 0); sl.GetRevision() != 1 {
		t.Fatalf("fenced write applied: revision %d", sl.GetRevision())
	}
	if st := s.Stats(); st.FenceFailures == 0 || st.QueueDepth == 0 {
		t.Fatalf("fenced change should stay dirty: %+v", st)
	}
}

func TestSetBeforeRunAndDeleteUnknown(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	s := New(c, testOptions())
	key, unknown := svcName(1), svcName(2)
	s.Set(key, newService(key, nil, 1, 0), time.Now())
	s.Set(unknown, nil, time.Now())
	testenv.Run(t, s.Run)
	testenv.EventuallyTrue(t, "written", func() bool { return get(t, c, space.Spec(key)) != nil })
	testenv.EventuallyTrue(t, "unknown delete skipped", func() bool { return s.Stats().Skipped == 1 })
	s.mu.Lock()
	_, kept := s.desired[unknown]
	s.mu.Unlock()
	if kept {
		t.Error("desired entry of a finished delete kept")
	}
}
