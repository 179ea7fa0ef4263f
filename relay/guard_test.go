package relay

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/xds/sotw"
)

// serviceKeys returns every key under services/ and vips/ with its mod
// revision: what a node agent reads.
func (w *world) serviceKeys() map[string]int64 {
	w.t.Helper()
	out := map[string]int64{}
	for k, rev := range w.keys() {
		if strings.HasPrefix(k, w.space.ServicesPrefix()) || strings.HasPrefix(k, w.space.VIPsPrefix()) {
			out[k] = rev
		}
	}
	return out
}

// heldMarkers counts the synced markers saying held_deletions.
func (w *world) heldMarkers() int {
	w.t.Helper()
	resp, err := w.client.Get(context.Background(), w.space.SyncedPrefix(), clientv3.WithPrefix())
	if err != nil {
		w.t.Fatal(err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		m, err := keyspace.ParseMarker(kv.Value)
		if err != nil {
			w.t.Fatalf("%s: %v", kv.Key, err)
		}
		if m.HeldDeletions {
			n++
		}
	}
	return n
}

// gauge reads one gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// completes is the number of complete upstream syncs the relay has seen:
// one per stream at most.
func (r *Relay) completesSeen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.completes
}

// TestMassDeletionGuard: with 300 services, removing one still deletes it;
// an empty CDS, an empty LDS, an EDS push emptying every service and a CDS
// dropping 90 % of the services each leave etcd's service keys unchanged,
// with the held count in the metric and held_deletions in the markers. The
// hold ends when upstream comes back, survives a fresh stream within the
// hold time, and ends on the operator's release.
func TestMassDeletionGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("300 services and five holds: slow; run without -short")
	}
	const services = 300
	w := newWorld(t, istiodsim.Options{Services: services, EndpointsPerService: 2, Namespaces: 3}, true)
	reg := prometheus.NewRegistry()
	r, _ := w.startRelayWith(w.sim.Addr(), func(o *Options) {
		o.Registerer = reg
		o.Sink.DeleteHoldTime = time.Hour
	})
	w.waitSynced(r)
	testenv.Eventually(w.t, "etcd matches the simulator", w.matchTruth)

	// An ordinary delete applies.
	if err := w.sim.DeleteService(services - 1); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(w.t, "1 of 300 deleted", w.matchTruth)
	if n := r.sink.HeldDeletions(); n != 0 {
		t.Fatalf("deleting 1 of %d services: %d held, want 0", services, n)
	}
	w.quiesce(r)

	held := func(what string, want int, mutate func() error, restore func() error) {
		t.Helper()
		before := w.serviceKeys()
		if err := mutate(); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(w.t, what+": held", func() error {
			if n := r.sink.HeldDeletions(); n != want {
				return fmt.Errorf("%d held, want %d", n, want)
			}
			if n := w.heldMarkers(); n == 0 {
				return fmt.Errorf("no synced marker says held_deletions")
			}
			return nil
		})
		w.quiesce(r)
		after := w.serviceKeys()
		if !maps.Equal(before, after) {
			changed, gone := changedSince(before, after, 0)
			_ = changed
			t.Fatalf("%s: etcd's service keys changed while held: %d keys gone, %d before, %d after",
				what, len(gone), len(before), len(after))
		}
		if g := gauge(t, reg, "meshrelay_relay_etcd_held_deletions"); g != float64(want) {
			t.Errorf("%s: held_deletions gauge %v, want %d", what, g, want)
		}
		if restore == nil {
			return
		}
		if err := restore(); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(w.t, what+": released when upstream came back", func() error {
			if n := r.sink.HeldDeletions(); n != 0 {
				return fmt.Errorf("%d held", n)
			}
			if n := w.heldMarkers(); n != 0 {
				return fmt.Errorf("%d markers say held_deletions", n)
			}
			return w.matchTruth()
		})
		w.quiesce(r)
	}
	repush := func() error { w.sim.Repush(); return nil }
	held("empty CDS", services-1, func() error { return w.sim.PushEmpty(resourcev3.ClusterType) }, repush)
	held("empty LDS", services-1, func() error { return w.sim.PushEmpty(resourcev3.ListenerType) }, repush)
	held("empty EDS", services-1, func() error { _, err := w.sim.RemoveEndpoints(1); return err },
		func() error { w.sim.RestoreEndpoints(); return nil })

	drop := make([]int, 0, 270)
	for i := range 270 {
		drop = append(drop, i)
	}
	held("CDS dropping 90%", 270, func() error { return w.sim.DeleteServices(drop...) }, nil)

	// A fresh stream within the hold time confirms nothing yet.
	seen := r.completesSeen()
	if err := w.sim.Restart(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(w.t, "fresh stream complete", func() error {
		if n := r.completesSeen(); n <= seen {
			return fmt.Errorf("%d complete syncs", n)
		}
		return nil
	})
	w.quiesce(r)
	if n := r.sink.HeldDeletions(); n != 270 {
		t.Fatalf("after a fresh stream within the hold time: %d held, want 270", n)
	}

	// The operator's release applies the deletion.
	if n := r.ReleaseDeletions(); n != 270 {
		t.Errorf("ReleaseDeletions = %d, want 270", n)
	}
	testenv.Eventually(w.t, "released deletions applied", func() error {
		if n := r.sink.HeldDeletions(); n != 0 {
			return fmt.Errorf("%d held", n)
		}
		if n := w.heldMarkers(); n != 0 {
			return fmt.Errorf("%d markers say held_deletions", n)
		}
		return w.matchTruth()
	})
}

// TestHeldDeletionsReleasedAfterHoldTime: after the hold time the relay
// opens a fresh stream; a deletion its complete state still asks for is
// applied.
func TestHeldDeletionsReleasedAfterHoldTime(t *testing.T) {
	const hold = time.Second
	w := newWorld(t, istiodsim.Options{Services: 30, EndpointsPerService: 1}, true)
	r, _ := w.startRelayWith(w.sim.Addr(), func(o *Options) { o.Sink.DeleteHoldTime = hold })
	w.waitSynced(r)
	testenv.Eventually(w.t, "etcd matches the simulator", w.matchTruth)
	if err := w.sim.DeleteServices(slices.Collect(func(yield func(int) bool) {
		for i := range 27 {
			if !yield(i) {
				return
			}
		}
	})...); err != nil {
		t.Fatal(err)
	}
	streams := r.client.(*sotw.Client).Stats().StreamsOpened
	// After the hold time the relay opens a fresh stream by itself; its
	// complete state still lacks the services, which applies the deletion.
	testenv.Eventually(w.t, "released by a fresh stream after the hold time", func() error {
		if n := r.sink.HeldDeletions(); n != 0 {
			return fmt.Errorf("%d held", n)
		}
		return w.matchTruth()
	})
	if got := r.client.(*sotw.Client).Stats().StreamsOpened; got <= streams {
		t.Fatalf("released without a fresh stream: %d streams opened, %d before", got, streams)
	}
	if h := r.sink.Stats().Holds; h != 1 {
		t.Fatalf("the deletion of 27 of 30 services was held %d times, want 1", h)
	}
}
