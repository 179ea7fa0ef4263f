package relay

import (
	"context"
	"fmt"
	"testing"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// TestRestartSweepsStrayKeys: a relay started against an etcd holding
// non-canonical keys (slice index 2·10⁹, aliased endpoints/010, a generation
// 0 in the staged form) starts, converges, and the keys are gone
// afterwards while every service is intact.
func TestRestartSweepsStrayKeys(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 12, EndpointsPerService: 2}, true)
	w.syncOnce()

	truth := w.sim.Truth()[0]
	prefix := w.space.ServicePrefix(keyspace.Service{Namespace: truth.Namespace, Name: truth.Name})
	stray := []string{prefix + "endpoints/2000000000", prefix + "endpoints/010", prefix + "endpoints/0/1", w.space.SyncedPrefix() + "07"}
	for _, k := range stray {
		if _, err := w.client.Put(context.Background(), k, "stray"); err != nil {
			t.Fatal(err)
		}
	}
	r2, _ := w.startRelay(w.sim.Addr())
	w.waitSynced(r2)
	testenv.Eventually(w.t, "stray keys deleted", func() error {
		keys := w.keys()
		for _, k := range stray {
			if _, ok := keys[k]; ok {
				return fmt.Errorf("%s still in etcd", k)
			}
		}
		return nil
	})
	if err := w.matchTruth(); err != nil {
		t.Fatal(err)
	}
}

// syncOnce runs a relay until etcd matches the simulator, then stops it:
// the state a restarted relay finds.
func (w *world) syncOnce() {
	w.t.Helper()
	r, stop := w.startRelay(w.sim.Addr())
	w.waitSynced(r)
	testenv.Eventually(w.t, "etcd matches the simulator", w.matchTruth)
	w.quiesce(r)
	stop()
}
