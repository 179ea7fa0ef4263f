package main

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/inspect"
	"github.com/meshrelay/meshrelay/relay/shard"
)

// leadersAre checks that every one of the shards is led as want says
// (relay id by shard) and that its marker was written by its leader.
func leadersAre(c clientv3.KV, space keyspace.Space, shards int, want func(shard int, leader string) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := shard.ReadStatus(ctx, c, space, shards)
	if err != nil {
		return err
	}
	for _, s := range st.Shards {
		if s.Leader == "" || !want(s.Shard, s.Leader) {
			return fmt.Errorf("shard %d led by %q", s.Shard, s.Leader)
		}
		if s.Marker == nil || s.Marker.Relay != s.Leader {
			return fmt.Errorf("shard %d: marker %+v, leader %s", s.Shard, s.Marker, s.Leader)
		}
	}
	return nil
}

// endpointsMatch checks that etcd holds the simulator's endpoints of svcs.
func endpointsMatch(c clientv3.KV, space keyspace.Space, sim *istiodsim.Sim, svcs []int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	truth := sim.Truth()
	for _, i := range svcs {
		want := truth[i]
		got, err := inspect.ReadService(ctx, c, space, keyspace.Service{Namespace: want.Namespace, Name: want.Name})
		if err != nil {
			return err
		}
		var g, w []string
		for _, sl := range got.Slices {
			for _, e := range sl.GetEndpoints() {
				g = append(g, fmt.Sprintf("%s:%d", e.GetAddress(), e.GetPort()))
			}
		}
		for _, e := range want.Endpoints {
			w = append(w, fmt.Sprintf("%s:%d", e.Address, e.Port))
		}
		slices.Sort(g)
		slices.Sort(w)
		if !slices.Equal(g, w) {
			return fmt.Errorf("%s/%s: etcd %v, upstream %v", want.Namespace, want.Name, g, w)
		}
	}
	return nil
}

// TestPausedReplicaWritesNothing runs two relay processes. The leader of
// some shards is stopped (SIGSTOP) with a burst of changes pending; its
// lease expires, the other replica takes its shards over and writes newer
// content; then it is continued (SIGCONT). None of its writes land: the
// changed services' keys are not written again after it resumed, and etcd
// holds the newest content. It steps down, then the shards are balanced
// again by hand-off.
func TestPausedReplicaWritesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two relay processes; skipped with -short")
	}
	rs := newReplicaSet(t, istiodsim.Options{Services: 40, EndpointsPerService: 2, Debounce: 10 * time.Millisecond})
	c, space, sim, etcd := rs.c, rs.space, rs.sim, rs.etcd
	// A wide coalescing window keeps a burst pending in the process.
	slow := []string{"--coalesce-window", "1500ms", "--coalesce-max-delay", "3s"}
	a := startProcess(t, "relay-a", sim.Addr(), etcd, slow...)
	testenv.Eventually(t, "relay-a leads every shard", func() error {
		return leadersAre(c, space, 4, func(_ int, l string) bool { return l == "relay-a" })
	})
	b := startProcess(t, "relay-b", sim.Addr(), etcd)
	aShards := map[int]bool{}
	testenv.Eventually(t, "two shards each", func() error {
		clear(aShards)
		err := leadersAre(c, space, 4, func(s int, l string) bool {
			aShards[s] = l == "relay-a"
			return true
		})
		if err == nil && len(slices.DeleteFunc(keysOf(aShards), func(s int) bool { return !aShards[s] })) != 2 {
			return fmt.Errorf("relay-a leads %v", aShards)
		}
		return err
	})
	var victims []int // services of relay-a's shards
	for _, s := range sim.Truth() {
		if aShards[keyspace.Shard(keyspace.Service{Namespace: s.Namespace, Name: s.Name}, 4)] && len(victims) < 6 {
			victims = append(victims, s.Index)
		}
	}

	// A burst reaches relay-a, which holds it in its window; stop it. The
	// first change of a quiet service is written at once, the second waits
	// for the end of the window: that one is pending.
	for range 2 {
		for _, i := range victims {
			if err := sim.ChurnEndpoints(i, 1); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.signal(t, syscall.SIGSTOP)
	testenv.Eventually(t, "relay-b takes relay-a's shards over", func() error {
		return leadersAre(c, space, 4, func(_ int, l string) bool { return l == "relay-b" })
	})
	// Newer content, written by relay-b.
	for _, i := range victims {
		if err := sim.ChurnEndpoints(i, 1); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, "relay-b writes the newer content", func() error { return endpointsMatch(c, space, sim, victims) })
	rev, err := c.Get(context.Background(), "/meshrelay-probe")
	if err != nil {
		t.Fatal(err)
	}

	a.signal(t, syscall.SIGCONT)
	testenv.Eventually(t, "balanced again after relay-a came back", func() error {
		n := 0
		err := leadersAre(c, space, 4, func(_ int, l string) bool {
			if l == "relay-a" {
				n++
			}
			return true
		})
		if err == nil && n != 2 {
			return fmt.Errorf("relay-a leads %d shards", n)
		}
		return err
	})
	if err := endpointsMatch(c, space, sim, victims); err != nil {
		t.Errorf("after relay-a resumed: %v", err)
	}
	truth := sim.Truth()
	for _, i := range victims {
		svc := keyspace.Service{Namespace: truth[i].Namespace, Name: truth[i].Name}
		resp, err := c.Get(context.Background(), space.ServicePrefix(svc), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if kv.ModRevision > rev.Header.Revision {
				t.Errorf("%s written after the paused replica resumed (revision %d > %d)", kv.Key, kv.ModRevision, rev.Header.Revision)
			}
		}
	}
	t.Logf("relay-a after resuming: fenced ops %s, deposed %s, leadership changes %s",
		a.metric(t, "meshrelay_relay_etcd_fenced_ops_total"), a.metric(t, "meshrelay_relay_shard_deposed_total"),
		a.metric(t, "meshrelay_relay_shard_leadership_changes_total"))
	if v := b.metric(t, "meshrelay_relay_etcd_fenced_ops_total"); v != "0" {
		t.Errorf("relay-b fenced ops %s", v)
	}
}

func keysOf(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
