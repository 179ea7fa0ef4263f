package relay

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/inspect"
)

// TestUnknownEndpointsKept: a relay restarted against an upstream that never
// answers EDS keeps every endpoint in etcd for longer than three sync
// timeouts, although its state counts as complete; an assignment that then
// really says zero endpoints is written as zero.
func TestUnknownEndpointsKept(t *testing.T) {
	const syncTimeout = 300 * time.Millisecond
	w := newWorld(t, istiodsim.Options{Services: 20, EndpointsPerService: 3}, true)
	w.syncOnce()
	before := w.serviceKeys()

	if err := w.sim.Withhold(resourcev3.EndpointType, true); err != nil {
		t.Fatal(err)
	}
	r2, _ := w.startRelayWith(w.sim.Addr(), func(o *Options) {
		o.SyncTimeout = syncTimeout
		o.Sink.MaxDeleteFraction = 1 // the mass-deletion guard would hide the fault
	})
	w.waitSynced(r2) // complete by the sync timeout: EDS never arrived
	time.Sleep(4 * syncTimeout)
	testenv.Eventually(w.t, "writer idle", func() error {
		if d := r2.sink.Stats().QueueDepth; d != 0 {
			return fmt.Errorf("queue depth %d", d)
		}
		return nil
	})
	if after := w.serviceKeys(); !maps.Equal(before, after) {
		changed, gone := changedSince(before, after, 0)
		t.Fatalf("EDS never answered: etcd's service keys changed: %d changed or new, %d gone", len(changed), len(gone))
	}
	if err := w.matchTruth(); err != nil {
		t.Fatalf("EDS never answered: %v", err)
	}

	// A real zero: the assignment of service 0 arrives and has no endpoints.
	if err := w.sim.Withhold(resourcev3.EndpointType, false); err != nil {
		t.Fatal(err)
	}
	if err := w.sim.SetEndpoints(0, 0); err != nil {
		t.Fatal(err)
	}
	zero := ""
	for _, s := range w.sim.Truth() {
		if len(s.Endpoints) == 0 {
			zero = s.Namespace + "/" + s.Name
		}
	}
	if zero == "" {
		t.Fatal("simulator truth has no service without endpoints")
	}
	testenv.Eventually(w.t, "service 0 written with zero endpoints", func() error {
		all, err := inspect.ReadAll(context.Background(), w.client, w.space)
		if err != nil {
			return err
		}
		for _, s := range all {
			n := 0
			for _, sl := range s.Slices {
				n += len(sl.GetEndpoints())
			}
			if s.Spec.GetNamespace()+"/"+s.Spec.GetName() == zero {
				if n != 0 {
					return fmt.Errorf("service 0 has %d endpoints", n)
				}
			} else if n != 3 {
				return fmt.Errorf("service %s/%s has %d endpoints, want 3", s.Spec.GetNamespace(), s.Spec.GetName(), n)
			}
		}
		return nil
	})
}

// TestUnknownRoutesKeepEtcd: a relay restarted against an upstream that
// never answers RDS writes nothing while the route listeners read is
// unknown (the VIPs it may claim are unknown, not absent), for longer than
// three sync timeouts; once the route arrives, the change made meanwhile is
// written.
func TestUnknownRoutesKeepEtcd(t *testing.T) {
	const syncTimeout = 300 * time.Millisecond
	w := newWorld(t, istiodsim.Options{Services: 8, EndpointsPerService: 2}, true)
	w.syncOnce()
	before := w.serviceKeys()

	if err := w.sim.Withhold(resourcev3.RouteType, true); err != nil {
		t.Fatal(err)
	}
	if err := w.sim.SetEndpoints(1, 5); err != nil { // a change while RDS is unknown
		t.Fatal(err)
	}
	r2, _ := w.startRelayWith(w.sim.Addr(), func(o *Options) {
		o.SyncTimeout = syncTimeout
		o.Sink.MaxDeleteFraction = 1
	})
	w.waitSynced(r2)
	time.Sleep(4 * syncTimeout)
	if after := w.serviceKeys(); !maps.Equal(before, after) {
		changed, gone := changedSince(before, after, 0)
		t.Fatalf("RDS never answered: etcd's service keys changed: %d changed or new, %d gone", len(changed), len(gone))
	}
	if err := w.sim.Withhold(resourcev3.RouteType, false); err != nil {
		t.Fatal(err)
	}
	w.sim.Repush()
	testenv.Eventually(w.t, "converged once the route arrived", w.matchTruth)
}
