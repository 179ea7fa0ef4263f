package relay

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

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

// TestReadinessMissingRoute: a relay whose listeners read an RDS route
// that never arrives holds every service update; once the route has been
// missing longer than UpstreamLostTimeout, Ready reports not ready naming
// the route, the rds_routes_pending metric counts it, and one log line
// says so. When the route arrives the relay is ready again and converges.
func TestReadinessMissingRoute(t *testing.T) {
	const bound = 300 * time.Millisecond
	w := newWorld(t, istiodsim.Options{Services: 8, EndpointsPerService: 2}, true)
	w.syncOnce()
	if err := w.sim.Withhold(resourcev3.RouteType, true); err != nil {
		t.Fatal(err)
	}
	if err := w.sim.SetEndpoints(1, 5); err != nil { // a change held while the route is missing
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	r, _ := w.startRelayWith(w.sim.Addr(), func(o *Options) {
		o.SyncTimeout = bound
		o.UpstreamLostTimeout = bound
		o.Sink.MaxDeleteFraction = 1
		o.Registerer = reg
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	w.waitSynced(r)
	w.notReady(r, fmt.Sprintf("RDS route %q", istiodsim.HTTPRoute))
	if n := gauge(t, reg, "meshrelay_relay_rds_routes_pending"); n != 1 {
		t.Errorf("meshrelay_relay_rds_routes_pending = %v, want 1", n)
	}
	if s := gauge(t, reg, "meshrelay_relay_rds_route_pending_seconds"); s < bound.Seconds() {
		t.Errorf("meshrelay_relay_rds_route_pending_seconds = %v, want > %v", s, bound.Seconds())
	}
	wantLog := fmt.Sprintf("route=%s", istiodsim.HTTPRoute)
	testenv.Eventually(w.t, "overdue route logged", func() error {
		if n := strings.Count(logs.String(), wantLog); n != 1 {
			return fmt.Errorf("%d log lines name %s:\n%s", n, wantLog, logs.String())
		}
		return nil
	})
	time.Sleep(4 * holdCheckInterval)
	if n := strings.Count(logs.String(), wantLog); n != 1 {
		t.Errorf("overdue route logged %d times, want once", n)
	}
	if err := w.matchTruth(); err == nil {
		t.Fatal("etcd matches the changed simulator while the route is missing: the change was not held")
	}

	if err := w.sim.Withhold(resourcev3.RouteType, false); err != nil {
		t.Fatal(err)
	}
	w.sim.Repush()
	w.ready(r)
	if n := gauge(t, reg, "meshrelay_relay_rds_routes_pending"); n != 0 {
		t.Errorf("route arrived: meshrelay_relay_rds_routes_pending = %v", n)
	}
	testenv.Eventually(w.t, "converged once the route arrived", w.matchTruth)
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
