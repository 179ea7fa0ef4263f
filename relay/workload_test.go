package relay

import (
	"fmt"
	"slices"
	"testing"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/xds/delta"
)

// workloadWorld is a world whose relays run in ModeWorkload against the
// simulator's delta WDS.
func workloadWorld(t *testing.T, so istiodsim.Options) *world {
	w := newWorld(t, so, true)
	w.mode = ModeWorkload
	return w
}

func svcKey(i int) keyspace.Service {
	return keyspace.Service{Namespace: "ns-0", Name: fmt.Sprintf("svc-%d", i)}
}

// TestWorkloadSyncAndChanges: in workload mode the initial sync matches the
// simulator's truth, and each workload add, delete and move, service add
// and delete, rewrites exactly the keys of the services it touches.
func TestWorkloadSyncAndChanges(t *testing.T) {
	w := workloadWorld(t, istiodsim.Options{Services: 8, EndpointsPerService: 3, PortsPerService: 2})
	r, _ := w.startRelay(w.sim.Addr())
	w.waitSynced(r)
	if err := w.matchTruth(); err != nil {
		t.Fatalf("synced, but etcd does not match the simulator: %v", err)
	}
	for shard := range keyspace.DefaultShards {
		if _, ok := w.keys()[w.space.Synced(shard)]; !ok {
			t.Errorf("synced/%d missing", shard)
		}
	}
	eps := func(i int) string { return w.space.Slice(svcKey(i), 0) }
	vip := func(i int) string {
		for _, st := range w.sim.Truth() {
			if st.Name == svcKey(i).Name {
				return w.space.VIP(st.VIPs[0])
			}
		}
		t.Fatalf("service %d not in the truth", i)
		return ""
	}
	vip0 := vip(0)
	steps := []struct {
		name          string
		do            func() error
		changed, gone func() []string // evaluated after do
	}{
		{"workload add", func() error { return w.sim.SetEndpoints(1, 5) }, func() []string { return []string{eps(1)} }, nil},
		{"workload delete", func() error { return w.sim.SetEndpoints(2, 1) }, func() []string { return []string{eps(2)} }, nil},
		{"workload move", func() error { return w.sim.MoveEndpoint(3, 4) }, func() []string { return []string{eps(3), eps(4)} }, nil},
		{"service add", func() error { _, err := w.sim.AddServices(1); return err },
			func() []string { return []string{eps(8), w.space.Spec(svcKey(8)), vip(8)} }, nil},
		{"service delete", func() error { return w.sim.DeleteService(0) }, nil,
			func() []string { return []string{eps(0), w.space.Spec(svcKey(0)), vip0} }},
	}
	for _, st := range steps {
		w.quiesce(r)
		before, rev := w.keys(), w.revision()
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		testenv.Eventually(w.t, st.name+" reaches etcd", w.matchTruth)
		w.quiesce(r)
		changed, gone := changedSince(before, w.keys(), rev)
		var wantChanged, wantGone []string
		if st.changed != nil {
			wantChanged = st.changed()
		}
		if st.gone != nil {
			wantGone = st.gone()
		}
		slices.Sort(wantChanged)
		slices.Sort(wantGone)
		if !slices.Equal(changed, wantChanged) || !slices.Equal(gone, wantGone) {
			t.Errorf("%s: changed %v, gone %v; want changed %v, gone %v", st.name, changed, gone, wantChanged, wantGone)
		}
	}
	if v := w.sim.Violations(); len(v) > 0 {
		t.Errorf("protocol violations: %v", v)
	}
}

// TestWorkloadReconnectWritesNothing: after Istiod restarts, the relay
// resubscribes with initial_resource_versions for everything it holds, and
// since nothing changed, etcd is not written.
func TestWorkloadReconnectWritesNothing(t *testing.T) {
	w := workloadWorld(t, istiodsim.Options{Services: 20, EndpointsPerService: 3})
	r, _ := w.startRelay(w.sim.Addr())
	w.waitSynced(r)
	testenv.Eventually(w.t, "initial state", w.matchTruth)
	w.quiesce(r)
	w.reconnectWritesNothing(r, delta.AddressType)
}

// reconnectWritesNothing restarts the simulator and checks that the relay
// resubscribes to typeURL with initial_resource_versions for every resource
// of it it holds, reaches a complete state again, and writes nothing.
func (w *world) reconnectWritesNothing(r *Relay, typeURL string) {
	w.t.Helper()
	rev := w.revision()
	c := r.client.(*delta.Client)
	held := c.Stats().Resources[typeURL]

	if err := w.sim.Restart(); err != nil {
		w.t.Fatal(err)
	}
	testenv.Eventually(w.t, "resubscribed", func() error {
		for _, s := range w.sim.DeltaSubscriptions() {
			if s.TypeURL == typeURL && len(s.InitialResourceVersions) > 0 {
				if len(s.InitialResourceVersions) != held {
					return fmt.Errorf("initial_resource_versions of %d resources, relay holds %d", len(s.InitialResourceVersions), held)
				}
				return nil
			}
		}
		return fmt.Errorf("no subscription with initial_resource_versions yet")
	})
	testenv.Eventually(w.t, "complete again", func() error {
		if s := c.Stats(); s.StreamsOpened < 2 || !s.Complete {
			return fmt.Errorf("streams %d, complete %v", s.StreamsOpened, s.Complete)
		}
		return nil
	})
	w.quiesce(r)
	if got := w.revision(); got != rev {
		changed, gone := changedSince(nil, w.keys(), rev)
		w.t.Errorf("reconnect without changes wrote etcd: revision %d -> %d, changed %v %v", rev, got, changed, gone)
	}
}

// TestWorkloadMalformedAddressNACKed: an invalid Address is NACKed and the
// last good state stays in etcd, untouched.
func TestWorkloadMalformedAddressNACKed(t *testing.T) {
	w := workloadWorld(t, istiodsim.Options{Services: 5, EndpointsPerService: 2})
	r, _ := w.startRelay(w.sim.Addr())
	w.waitSynced(r)
	testenv.Eventually(w.t, "initial state", w.matchTruth)
	w.quiesce(r)
	rev := w.revision()
	// One at a time: replies to responses received back to back collapse
	// into the reply to the newest (relay/xds/reconnect).
	for i, m := range []istiodsim.Malformation{istiodsim.Undecodable, istiodsim.WrongType, istiodsim.Nameless} {
		if err := w.sim.PushMalformedAddress(m); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(w.t, fmt.Sprintf("NACK of %s", m), func() error {
			if n := len(w.sim.Nacks()); n != i+1 {
				return fmt.Errorf("%d NACKs, want %d", n, i+1)
			}
			return nil
		})
	}
	w.quiesce(r)
	if got := w.revision(); got != rev {
		t.Errorf("malformed pushes wrote etcd: revision %d -> %d", rev, got)
	}
	if err := w.matchTruth(); err != nil {
		t.Errorf("last good state lost: %v", err)
	}
	// Still serving: a later good change goes through.
	if err := w.sim.SetEndpoints(1, 4); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(w.t, "good change after NACKs", w.matchTruth)
}
