package etcdsink

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// fakeFencer leads the shards it was given terms for; like a paused
// process, it keeps offering a term until the Sink reports it deposed.
type fakeFencer struct {
	mu      sync.Mutex
	terms   map[int]clientv3.Cmp
	deposed []int
}

func (f *fakeFencer) Fence(shard int) (clientv3.Cmp, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.terms[shard]
	return c, ok
}

func (f *fakeFencer) Deposed(shard int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.terms, shard)
	f.deposed = append(f.deposed, shard)
}

func (f *fakeFencer) set(shard int, c clientv3.Cmp) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.terms == nil {
		f.terms = map[int]clientv3.Cmp{}
	}
	f.terms[shard] = c
}

func (f *fakeFencer) deposedShards() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deposed)
}

// elect puts an election key for shard on a new lease, as
// concurrency.Election does, and returns the term's fence and the lease.
func elect(t *testing.T, c *clientv3.Client, shard int, relay string) (clientv3.Cmp, clientv3.LeaseID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := c.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("%s%x", space.ShardElection(shard), lease.ID)
	resp, err := c.Put(ctx, key, relay, clientv3.WithLease(lease.ID))
	if err != nil {
		t.Fatal(err)
	}
	return clientv3.Compare(clientv3.CreateRevision(key), "=", resp.Header.Revision), lease.ID
}

func revoke(t *testing.T, c *clientv3.Client, id clientv3.LeaseID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// shardServices returns n services of shard among testOptions().Shards.
func shardServices(shard, n int) []keyspace.Service {
	var out []keyspace.Service
	for i := 0; len(out) < n; i++ {
		if svc := svcName(i); keyspace.Shard(svc, testOptions().Shards) == shard {
			out = append(out, svc)
		}
	}
	return out
}

func newFencedSink(c *clientv3.Client, relay string, f *fakeFencer) *Sink {
	opts := testOptions()
	opts.RelayID = relay
	opts.Fencer = f
	return New(c, opts)
}

func waitShardSynced(t *testing.T, s *Sink, shard int) {
	t.Helper()
	testenv.Eventually(t, fmt.Sprintf("shard %d taken over", shard), func() error {
		for _, h := range s.ShardStats().Held {
			if h.Shard == shard && h.Synced {
				return nil
			}
		}
		return fmt.Errorf("held %+v", s.ShardStats().Held)
	})
}

// leader starts a fenced Sink for relay that leads shard in a new term
// (on a new lease), sets desired, completes with present and waits until
// the shard is taken over.
func leader(t *testing.T, c *clientv3.Client, relay string, shard int, desired map[keyspace.Service]*model.Service, present []keyspace.Service) (*Sink, *fakeFencer, clientv3.LeaseID, *testenv.Running) {
	t.Helper()
	f := &fakeFencer{}
	cmp, lease := elect(t, c, shard, relay)
	f.set(shard, cmp)
	s := newFencedSink(c, relay, f)
	for svc, d := range desired {
		s.Set(svc, d, time.Now())
	}
	s.Complete(present)
	r := testenv.Run(t, s.Run)
	s.ShardsChanged()
	waitShardSynced(t, s, shard)
	return s, f, lease, r
}

// generation returns a desired state of svcs whose every slice depends on gen.
func generation(svcs []keyspace.Service, gen int) map[keyspace.Service]*model.Service {
	out := map[keyspace.Service]*model.Service{}
	for _, svc := range svcs {
		out[svc] = newService(svc, nil, 2, gen)
	}
	return out
}

// TestFencedSinkWritesOnlyItsShards: a Sink writes the services and the
// marker of the shards it leads, nothing of the others.
func TestFencedSinkWritesOnlyItsShards(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	f := &fakeFencer{}
	cmp, _ := elect(t, c, 1, "relay-a")
	f.set(1, cmp)
	s := newFencedSink(c, "relay-a", f)
	mine, other := shardServices(1, 3), shardServices(2, 3)
	all := append(slices.Clone(mine), other...)
	for _, svc := range all {
		s.Set(svc, newService(svc, nil, 2, 0), time.Now())
	}
	s.Complete(all)
	testenv.Run(t, s.Run)
	s.ShardsChanged()
	waitShardSynced(t, s, 1)
	for _, svc := range mine {
		if get(t, c, space.Spec(svc)) == nil {
			t.Errorf("%s of the led shard not written", svc)
		}
	}
	for _, svc := range other {
		if get(t, c, space.Spec(svc)) != nil {
			t.Errorf("%s of another shard written", svc)
		}
	}
	if n := countPrefix(t, c, space.SyncedPrefix()); n != 1 || get(t, c, space.Synced(1)) == nil {
		t.Errorf("%d markers, want synced/1 only", n)
	}
	if st := s.ShardStats(); st.FencedOps != 0 || st.Takeovers != 1 {
		t.Errorf("shard stats %+v", st)
	}
}

// TestPausedLeaderWritesNothing: a leader whose lease expired while it was
// paused comes back with a burst pending; the new leader already wrote
// newer content. None of the old leader's writes land, they are counted,
// and it steps down.
func TestPausedLeaderWritesNothing(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	const shard = 2
	svcs := shardServices(shard, 4)

	a, fa, leaseA, _ := leader(t, c, "relay-a", shard, generation(svcs, 0), svcs)

	// a pauses; its lease expires; b takes over and writes newer content.
	revoke(t, c, leaseA)
	b, _, _, _ := leader(t, c, "relay-b", shard, generation(svcs, 5), svcs)
	want := map[keyspace.Service][]byte{}
	for _, svc := range svcs {
		want[svc] = get(t, c, space.Slice(svc, 0)).value
	}
	marker := get(t, c, space.Synced(shard)).value

	// a resumes with its burst pending, still believing it leads.
	for _, svc := range svcs {
		a.Set(svc, newService(svc, nil, 2, 9), time.Now())
	}
	testenv.EventuallyTrue(t, "a deposed", func() bool { return slices.Contains(fa.deposedShards(), shard) })
	for _, svc := range svcs {
		if got := get(t, c, space.Slice(svc, 0)).value; string(got) != string(want[svc]) {
			sl, _ := model.DecodeSlice(got)
			t.Errorf("%s: the deposed leader's write landed: %v", svc, sl)
		}
	}
	if got := get(t, c, space.Synced(shard)).value; string(got) != string(marker) {
		t.Errorf("marker overwritten by the deposed leader: %s", got)
	}
	st := a.ShardStats()
	if st.FencedOps == 0 || len(st.Held) != 0 {
		t.Errorf("deposed leader: %+v, want fenced ops counted and no shard held", st)
	}
	if n := b.ShardStats().FencedOps; n != 0 {
		t.Errorf("new leader had %d fenced ops", n)
	}
}

// TestTakeoverWritesOnlyTheMarker: a new leader of a shard whose data is
// current (upstream unchanged) writes nothing but the marker; where the
// previous leader left something stale, it writes just that.
func TestTakeoverWritesOnlyTheMarker(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	const shard = 3
	svcs := shardServices(shard, 20)
	desired := map[keyspace.Service]*model.Service{}
	for i, svc := range svcs {
		desired[svc] = newService(svc, []string{vip(i)}, 3, 0)
	}

	_, _, leaseA, ra := leader(t, c, "relay-a", shard, desired, svcs)
	if err := ra.Stop(); err != nil {
		t.Fatal(err)
	}
	revoke(t, c, leaseA)

	// b has the same upstream state, except one service changed since.
	changed := svcs[7]
	fb := &fakeFencer{}
	b := newFencedSink(c, "relay-b", fb)
	for svc, d := range desired {
		b.Set(svc, d, time.Now())
	}
	b.Set(changed, withEndpointPort(desired[changed], 1, 9999), time.Now())
	b.Complete(svcs)
	testenv.Run(t, b.Run)
	// b is a standby first: it knows everything and writes nothing.
	time.Sleep(100 * time.Millisecond)
	if st := b.Stats(); st.Puts != 0 {
		t.Fatalf("standby wrote %d keys", st.Puts)
	}
	rev := headerRevision(t, c)
	cmpB, _ := elect(t, c, shard, "relay-b")
	fb.set(shard, cmpB)
	b.ShardsChanged()
	waitShardSynced(t, b, shard)
	// One slice of the changed service, then the marker.
	if st := b.Stats(); st.Puts != 2 || st.Deletes != 0 {
		t.Errorf("takeover wrote %d keys, %d deletes; want the changed slice and the marker", st.Puts, st.Deletes)
	}
	if got := headerRevision(t, c); got != rev+3 { // election key, slice, marker
		t.Errorf("etcd moved from %d to %d, want 3 revisions", rev, got)
	}
	m, err := keyspace.ParseMarker(get(t, c, space.Synced(shard)).value)
	if err != nil || m.Relay != "relay-b" || m.Services != len(svcs) {
		t.Errorf("marker after takeover: %+v, %v", m, err)
	}
}

// TestFencedSinkPacksShards: a batch of services of two led shards is one
// transaction carrying both fences; once one shard's term ended, a batch
// of both still writes the led shard's service, drops the other's and
// steps down from that shard only.
func TestFencedSinkPacksShards(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	f := &fakeFencer{}
	cmp1, _ := elect(t, c, 1, "relay-a")
	cmp2, lease2 := elect(t, c, 2, "relay-a")
	f.set(1, cmp1)
	f.set(2, cmp2)
	s := newFencedSink(c, "relay-a", f)
	one, two := shardServices(1, 2), shardServices(2, 2)
	all := append(slices.Clone(one), two...)
	desired := generation(all, 0)
	for _, svc := range all {
		s.Set(svc, desired[svc], time.Now())
	}
	s.Complete(all)
	testenv.Run(t, s.Run)
	s.ShardsChanged()
	waitShardSynced(t, s, 1)
	waitShardSynced(t, s, 2)

	rev := headerRevision(t, c)
	txns := s.Stats().Txns
	s.SetAll([]Desired{
		{Service: one[0], State: withEndpointPort(desired[one[0]], 1, 9001)},
		{Service: two[0], State: withEndpointPort(desired[two[0]], 1, 9002)},
	})
	testenv.EventuallyTrue(t, "both services written", func() bool { return headerRevision(t, c) >= rev+1 && s.Stats().Txns > txns })
	time.Sleep(50 * time.Millisecond)
	if got := headerRevision(t, c); got != rev+1 {
		t.Errorf("etcd moved from %d to %d, want one transaction for both shards", rev, got)
	}
	if n := s.Stats().Txns - txns; n != 1 {
		t.Errorf("%d transactions for a change of two shards, want 1", n)
	}

	// Shard 2's term ends; the fencer still offers it, as a paused
	// process would.
	revoke(t, c, lease2)
	before := get(t, c, space.Slice(two[1], 0)).value
	beforeOne := get(t, c, space.Slice(one[1], 0)).value
	s.SetAll([]Desired{
		{Service: one[1], State: withEndpointPort(desired[one[1]], 1, 9003)},
		{Service: two[1], State: withEndpointPort(desired[two[1]], 1, 9004)},
	})
	testenv.EventuallyTrue(t, "shard 2 deposed", func() bool { return slices.Contains(f.deposedShards(), 2) })
	testenv.EventuallyTrue(t, "the led shard's service written", func() bool {
		return string(get(t, c, space.Slice(one[1], 0)).value) != string(beforeOne)
	})
	if got := get(t, c, space.Slice(two[1], 0)).value; string(got) != string(before) {
		t.Errorf("%s: written through an ended term", two[1])
	}
	st := s.ShardStats()
	if st.FencedOps == 0 || len(st.Held) != 1 || st.Held[0].Shard != 1 {
		t.Errorf("shard stats %+v, want fenced ops counted and shard 1 still held", st)
	}
	if d := f.deposedShards(); !slices.Equal(d, []int{2}) {
		t.Errorf("deposed %v, want [2]", d)
	}
}

// TestTakeoverWritesAtBootstrapRate: a replica that leads no shard yet
// stays at the bootstrap rate, and a takeover rewrites its shards at that
// rate, not at the steady rate meant for churn. With a steady rate of one
// operation per 100 s, the shard's 40 services (more operations than one
// burst) are written only if the takeover runs at the bootstrap rate; then
// the steady rate applies again.
func TestTakeoverWritesAtBootstrapRate(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	f := &fakeFencer{}
	opts := testOptions()
	opts.RelayID, opts.Fencer = "relay-a", f
	opts.OpsPerSecond, opts.Burst, opts.MaxTxnOps = 0.01, 1, 8
	s := New(c, opts)
	svcs := shardServices(1, 40)
	for _, svc := range svcs {
		s.Set(svc, newService(svc, nil, 2, 0), time.Now())
	}
	s.Complete(svcs)
	testenv.Run(t, s.Run)
	// Markers of no shard are due before any shard is led: the sink must
	// not leave the bootstrap rate for them.
	testenv.EventuallyTrue(t, "markers processed with no shard led", func() bool { return s.queue.Len() == 0 })
	cmp, _ := elect(t, c, 1, "relay-a")
	f.set(1, cmp)
	s.ShardsChanged()
	waitShardSynced(t, s, 1)
	for _, svc := range svcs {
		if get(t, c, space.Spec(svc)) == nil {
			t.Errorf("%s not written by the takeover", svc)
		}
	}
	testenv.EventuallyTrue(t, "steady rate after the takeover's markers", func() bool {
		return s.ShardStats().Held[0].Synced && float64(s.limiter.Limit()) == opts.OpsPerSecond
	})
}
