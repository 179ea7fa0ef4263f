package relay

import (
	"fmt"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// notReady waits until Ready reports not ready with a reason containing
// want.
func (w *world) notReady(r *Relay, want string) {
	w.t.Helper()
	testenv.Eventually(w.t, "not ready: "+want, func() error {
		ok, why := r.Ready()
		if ok || !strings.Contains(why, want) {
			return fmt.Errorf("Ready() = %v, %q", ok, why)
		}
		return nil
	})
}

func (w *world) ready(r *Relay) {
	w.t.Helper()
	testenv.Eventually(w.t, "ready", func() error {
		if ok, why := r.Ready(); !ok {
			return fmt.Errorf("not ready: %s", why)
		}
		return nil
	})
}

// TestReadinessNackLoopAndLostUpstream: every push of CDS NACKed turns the
// relay not ready, naming the type and the offending resource, until a
// valid push; an upstream lost for longer than the bound turns it not
// ready until it is back.
func TestReadinessNackLoopAndLostUpstream(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 10, EndpointsPerService: 1}, true)
	addr := w.sim.Addr()
	r, _ := w.startRelayWith(addr, func(o *Options) { o.UpstreamLostTimeout = 200 * time.Millisecond })
	w.waitSynced(r)
	w.ready(r)

	// One rejected push is not a loop.
	if err := w.sim.PushMalformed(resourcev3.ClusterType, istiodsim.Nameless); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(w.t, "first NACK", func() error {
		if n := len(w.sim.Nacks()); n < 1 {
			return fmt.Errorf("%d NACKs", n)
		}
		return nil
	})
	if ok, why := r.Ready(); !ok {
		t.Fatalf("one NACK made the relay not ready: %s", why)
	}
	if err := w.sim.PushMalformed(resourcev3.ClusterType, istiodsim.Nameless); err != nil {
		t.Fatal(err)
	}
	w.notReady(r, "NACKing every push of "+resourcev3.ClusterType)
	if _, why := r.Ready(); !strings.Contains(why, "name") {
		t.Errorf("reason does not say what is wrong with the resource: %q", why)
	}
	w.sim.Repush() // valid again
	w.ready(r)

	w.sim.Stop()
	w.notReady(r, "lost for")
	if err := w.sim.Start(addr); err != nil {
		t.Fatal(err)
	}
	w.ready(r)
}

// TestHealthStuckWriter: with etcd gone and changes pending, the writer
// makes no progress and /healthz's Healthy turns false; it recovers when
// etcd is back.
func TestHealthStuckWriter(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 10, EndpointsPerService: 2}, true)
	r, _ := w.startRelayWith(w.sim.Addr(), func(o *Options) { o.StallTimeout = 500 * time.Millisecond })
	w.waitSynced(r)
	w.quiesce(r)
	if ok, why := r.Healthy(); !ok {
		t.Fatalf("idle relay unhealthy: %s", why)
	}
	if err := w.etcd.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.sim.ChurnEndpoints(1, 1); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(w.t, "unhealthy while etcd blocks pending work", func() error {
		if ok, why := r.Healthy(); ok || !strings.Contains(why, "no progress") {
			return fmt.Errorf("Healthy() = %v, %q", ok, why)
		}
		return nil
	})
	w.startEtcd()
	testenv.Eventually(w.t, "healthy again", func() error {
		if ok, why := r.Healthy(); !ok {
			return fmt.Errorf("unhealthy: %s", why)
		}
		return nil
	})
	testenv.Eventually(w.t, "converged", w.matchTruth)
}
