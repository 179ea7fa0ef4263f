package shard

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

const testCluster = "test"

func testOptions(t *testing.T, id string) Options {
	return Options{Cluster: testCluster, Shards: 16, RelayID: id, LeaseTTL: 2 * time.Second, Interval: 50 * time.Millisecond, Logger: testenv.Logger(t, "relay", id)}
}

// startMember runs a Membership on its own client, so that closing the
// client kills it without cleanup.
func startMember(t *testing.T, endpoints []string, opts Options) (*Membership, *clientv3.Client, *testenv.Running) {
	t.Helper()
	c, err := embedetcd.NewClient(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m, err := New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, c, testenv.Run(t, m.Run)
}

// settled checks that every shard has exactly one leader among ms, that
// each holds at most max, and that etcd's table agrees.
func settled(c clientv3.KV, shards, most int, ms ...*Membership) error {
	owner := map[int]string{}
	for _, m := range ms {
		held := m.Held()
		if len(held) > most {
			return fmt.Errorf("%s holds %d shards %v, more than %d", m.opts.RelayID, len(held), held, most)
		}
		for _, s := range held {
			if o, ok := owner[s]; ok {
				return fmt.Errorf("shard %d led by %s and %s", s, o, m.opts.RelayID)
			}
			owner[s] = m.opts.RelayID
		}
	}
	if len(owner) != shards {
		return fmt.Errorf("%d of %d shards led", len(owner), shards)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	table, err := ReadTable(ctx, c, keyspace.New(testCluster), shards)
	if err != nil {
		return err
	}
	for s := range shards {
		if table.Leader(s) != owner[s] {
			return fmt.Errorf("shard %d: etcd says %q leads, replicas say %q", s, table.Leader(s), owner[s])
		}
	}
	return nil
}

func TestThreeReplicasShareShardsEvenly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd elections; skipped with -short")
	}
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	var ms []*Membership
	for i := range 3 {
		m, _, _ := startMember(t, srv.Endpoints(), testOptions(t, fmt.Sprintf("relay-%d", i)))
		ms = append(ms, m)
	}
	testenv.Eventually(t, "16 shards split over 3 replicas", func() error { return settled(c, 16, 6, ms...) })
	// Steady: nothing changes hands once settled.
	var changes uint64
	for _, m := range ms {
		changes += m.Stats().LeadershipChanges
	}
	time.Sleep(500 * time.Millisecond)
	var after uint64
	for _, m := range ms {
		after += m.Stats().LeadershipChanges
		if m.Stats().Deposed != 0 {
			t.Errorf("%s deposed in a steady run", m.opts.RelayID)
		}
	}
	if after != changes {
		t.Errorf("leadership changed in a steady run: %d -> %d", changes, after)
	}
	// The membership records name the shards held.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	testenv.Eventually(t, "membership records list held shards", func() error {
		table, err := ReadTable(ctx, c, keyspace.New(testCluster), 16)
		if err != nil {
			return err
		}
		for _, m := range ms {
			rec, ok := table.Members[m.opts.RelayID]
			if !ok || !rec.Ready || !slices.Equal(rec.Shards, m.Held()) {
				return fmt.Errorf("record of %s: %+v, holds %v", m.opts.RelayID, rec, m.Held())
			}
		}
		return nil
	})
}

func TestJoinRebalancesWithoutGaps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd elections; skipped with -short")
	}
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	a, _, _ := startMember(t, srv.Endpoints(), testOptions(t, "relay-a"))
	testenv.Eventually(t, "one replica leads all", func() error { return settled(c, 16, 16, a) })
	// Watch that no shard ever goes vacant during the hand-offs.
	var vacant atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			table, err := ReadTable(ctx, c, keyspace.New(testCluster), 16)
			cancel()
			if err != nil {
				continue
			}
			for s := range 16 {
				if table.Leader(s) == "" {
					vacant.Add(1)
				}
			}
		}
	}()
	b, _, _ := startMember(t, srv.Endpoints(), testOptions(t, "relay-b"))
	testenv.Eventually(t, "two replicas split 8/8", func() error { return settled(c, 16, 8, a, b) })
	close(stop)
	<-done
	if n := vacant.Load(); n != 0 {
		t.Errorf("shards seen vacant %d times during the join: a hand-off must wait for the successor", n)
	}
}

func TestKilledReplicaShardsTakenOver(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd elections; skipped with -short")
	}
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	var ms []*Membership
	var clients []*clientv3.Client
	for i := range 3 {
		m, mc, _ := startMember(t, srv.Endpoints(), testOptions(t, fmt.Sprintf("relay-%d", i)))
		ms, clients = append(ms, m), append(clients, mc)
	}
	testenv.Eventually(t, "settled", func() error { return settled(c, 16, 6, ms...) })
	victim := ms[0].Leaders()
	// kill -9: the client goes away, nothing is revoked; the lease expires.
	clients[0].Close()
	start := time.Now()
	testenv.Eventually(t, "survivors lead every shard", func() error { return settled(c, 16, 8, ms[1], ms[2]) })
	t.Logf("takeover of %d shards after the kill: %v (lease TTL 2 s)", len(victim), time.Since(start).Round(10*time.Millisecond))
	for _, l := range victim {
		select {
		case <-l.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("shard %d: the killed replica's term did not end", l.Shard)
		}
	}
}

func TestNotEligibleDoesNotCampaignAndHandsOff(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd elections; skipped with -short")
	}
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	var aOK, bOK atomic.Bool
	aOK.Store(true)
	oa := testOptions(t, "relay-a")
	oa.Eligible = aOK.Load
	ob := testOptions(t, "relay-b")
	ob.Eligible = bOK.Load
	a, _, _ := startMember(t, srv.Endpoints(), oa)
	b, _, _ := startMember(t, srv.Endpoints(), ob)
	testenv.Eventually(t, "only the eligible replica leads", func() error { return settled(c, 16, 16, a) })
	if h := b.Held(); len(h) != 0 {
		t.Fatalf("ineligible replica leads %v", h)
	}
	bOK.Store(true)
	testenv.Eventually(t, "split once both are eligible", func() error { return settled(c, 16, 8, a, b) })
	aOK.Store(false) // a's upstream broke: it hands everything to b
	testenv.Eventually(t, "b leads all", func() error { return settled(c, 16, 16, b) })
	if h := a.Held(); len(h) != 0 {
		t.Fatalf("a still leads %v", h)
	}
}

func TestDeposedDropsShard(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd elections; skipped with -short")
	}
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	o := testOptions(t, "relay-a")
	o.Shards = 2
	a, _, _ := startMember(t, srv.Endpoints(), o)
	testenv.Eventually(t, "leads both", func() error { return settled(c, 2, 2, a) })
	l := a.Leaders()[0]
	a.Deposed(l.Shard)
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("term not ended by Deposed")
	}
	if _, ok := a.Fence(l.Shard); ok {
		t.Error("Fence still offered after Deposed")
	}
	if st := a.Stats(); st.Deposed != 1 {
		t.Errorf("deposed count %d", st.Deposed)
	}
	// It campaigns again (the shard is vacant), with a new term.
	testenv.Eventually(t, "led again", func() error { return settled(c, 2, 2, a) })
	for _, nl := range a.Leaders() {
		if nl.Shard == l.Shard && nl.Revision == l.Revision {
			t.Error("same term after being deposed")
		}
	}
}

// TestWipedEtcdEachRetakesItsShards: etcd restarted empty under three
// settled replicas. Each joins again expecting the others, and wins back
// exactly the shards it led, with no hand-off (docs/contract.md, "Failure").
func TestWipedEtcdEachRetakesItsShards(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd under elections; skipped with -short")
	}
	srv := testenv.StartEtcd(t, embedetcd.Options{Dir: t.TempDir()})
	url := srv.Endpoints()[0]
	c := testenv.Client(t, srv.Endpoints())
	var ms []*Membership
	for i := range 3 {
		opts := testOptions(t, fmt.Sprintf("relay-%d", i))
		opts.LeaseTTL = 10 * time.Second // the wait for the peers outlasts a loaded re-join
		m, _, _ := startMember(t, srv.Endpoints(), opts)
		ms = append(ms, m)
	}
	testenv.Eventually(t, "16 shards split over 3 replicas", func() error { return settled(c, 16, 6, ms...) })
	before := map[string][]int{}
	for _, m := range ms {
		before[m.opts.RelayID] = m.Held()
	}

	srv.Close()
	srv = testenv.StartEtcd(t, embedetcd.Options{ClientURL: url}) // empty
	c = testenv.Client(t, srv.Endpoints())
	testenv.Eventually(t, "every replica joined again and every shard led", func() error {
		table, err := ReadTable(context.Background(), c, keyspace.New(testCluster), 16)
		if err != nil {
			return err
		}
		if len(table.Members) != 3 {
			return fmt.Errorf("%d members", len(table.Members))
		}
		return settled(c, 16, 6, ms...)
	})
	for _, m := range ms {
		if got := m.Held(); !slices.Equal(got, before[m.opts.RelayID]) {
			t.Errorf("%s leads %v after the wipe, %v before", m.opts.RelayID, got, before[m.opts.RelayID])
		}
		if m.Stats().Deposed != 0 {
			t.Errorf("%s deposed", m.opts.RelayID)
		}
	}
}

// TestPokeCampaignsAtOnce: a replica that becomes eligible and pokes its
// Membership campaigns in that round, not at the next Interval (an hour
// here).
func TestPokeCampaignsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd elections; skipped with -short")
	}
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	var ok atomic.Bool
	o := testOptions(t, "relay-a")
	o.Interval = time.Hour
	o.Eligible = ok.Load
	m, _, _ := startMember(t, srv.Endpoints(), o)
	time.Sleep(200 * time.Millisecond) // its first round ran, not eligible
	if h := m.Held(); len(h) != 0 {
		t.Fatalf("ineligible replica leads %v", h)
	}
	ok.Store(true)
	m.Poke()
	testenv.Eventually(t, "all shards led after the poke", func() error { return settled(c, 16, 16, m) })
}
