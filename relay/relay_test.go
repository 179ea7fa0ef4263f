package relay

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/opsserver"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/xds/sotw"
)

func readyz(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestInitialSync: every simulated service reaches etcd with its spec, VIPs,
// ports and endpoints; synced/* markers are written; /readyz turns ready
// only once all of that is in etcd.
func TestInitialSync(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 60, EndpointsPerService: 4, Namespaces: 3, PortsPerService: 2, Weights: true, SubsetClusters: true}, false)
	// Pick the simulator's address first, then start the relay before the
	// simulator so /readyz is seen not ready.
	if err := w.sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr := w.sim.Addr()
	w.sim.Stop()
	r, _ := w.startRelay(addr)
	ops, err := opsserver.Start(opsserver.Options{Listen: "127.0.0.1:0", Ready: r.Ready})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ops.Close(context.Background()) })
	url := "http://" + ops.Addr() + "/readyz"
	if code := readyz(t, url); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before any upstream = %d, want 503", code)
	}
	if err := w.sim.Start(addr); err != nil {
		t.Fatal(err)
	}
	// Poll /readyz; the moment it is ready, etcd must already hold everything.
	testenv.Eventually(w.t, "/readyz ready", func() error {
		if code := readyz(t, url); code != http.StatusOK {
			return fmt.Errorf("/readyz = %d", code)
		}
		return nil
	})
	if err := w.matchTruth(); err != nil {
		t.Fatalf("ready, but etcd does not match the simulator: %v", err)
	}
	keys := w.keys()
	for shard := 0; shard < keyspace.DefaultShards; shard++ {
		if _, ok := keys[w.space.Synced(shard)]; !ok {
			t.Errorf("synced/%d missing", shard)
		}
	}
	if _, ok := keys[w.space.Generation()]; !ok {
		t.Error("generation missing")
	}
	if v := w.sim.Violations(); len(v) > 0 {
		t.Errorf("protocol violations seen by the simulator: %v", v)
	}
}

// TestPartialEDSAndDelete: a partial EDS push rewrites only the affected
// service's keys; a deleted service's keys and VIP index disappear.
func TestPartialEDSAndDelete(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 40, EndpointsPerService: 3}, true)
	r, _ := w.startRelay(w.sim.Addr())
	w.waitSynced(r)
	testenv.Eventually(w.t, "initial state", w.matchTruth)

	before, rev := w.keys(), w.revision()
	if err := w.sim.ChurnEndpoints(7, 1); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(w.t, "churn reaches etcd", w.matchTruth)
	truth := w.sim.Truth()
	svc7 := keyspace.Service{Namespace: truth[7].Namespace, Name: truth[7].Name}
	changed, gone := changedSince(before, w.keys(), rev)
	if len(gone) != 0 {
		t.Errorf("keys deleted by an endpoint churn: %v", gone)
	}
	if len(changed) == 0 {
		t.Fatal("churn changed no key")
	}
	for _, k := range changed {
		if !strings.HasPrefix(k, w.space.ServicePrefix(svc7)) {
			t.Errorf("churn of %s changed an unrelated key %s", svc7, k)
		}
	}

	victim := truth[11]
	victimKey := keyspace.Service{Namespace: victim.Namespace, Name: victim.Name}
	if err := w.sim.DeleteService(victim.Index); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(w.t, "deleted service leaves etcd", func() error {
		keys := w.keys()
		for k := range keys {
			if strings.HasPrefix(k, w.space.ServicePrefix(victimKey)) {
				return fmt.Errorf("key %s still present", k)
			}
		}
		if _, ok := keys[w.space.VIP(victim.VIPs[0])]; ok {
			return fmt.Errorf("vips/%s still present", victim.VIPs[0])
		}
		return w.matchTruth()
	})
}

// quiesce waits until the simulator's streams have ACKed its latest push
// and the relay's writer has nothing queued, then one more coalescing
// window so any write the push caused has been committed.
func (w *world) quiesce(r *Relay) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.sim.WaitAcked(ctx); err != nil {
		w.t.Fatalf("simulator not ACKed: %v", err)
	}
	testenv.Eventually(w.t, "writer idle", func() error {
		if d := r.sink.Stats().QueueDepth; d != 0 {
			return fmt.Errorf("queue depth %d", d)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // > MaxDelay of the test sink: a pending flush has fired
	testenv.Eventually(w.t, "writer idle after window", func() error {
		if d := r.sink.Stats().QueueDepth; d != 0 {
			return fmt.Errorf("queue depth %d", d)
		}
		return nil
	})
}

// TestIdenticalRepushAndRestartWriteNothing: a full re-push with new
// versions and the same content, and a relay restart against unchanged
// config, leave etcd's revision where it was.
func TestIdenticalRepushAndRestartWriteNothing(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 50, EndpointsPerService: 3, PortsPerService: 2}, true)
	r, stop := w.startRelay(w.sim.Addr())
	w.waitSynced(r)
	w.quiesce(r)
	rev := w.revision()

	acks := r.client.(*sotw.Client).Stats().ACKs
	w.sim.Repush()
	testenv.Eventually(w.t, "re-push ACKed", func() error {
		if r.client.(*sotw.Client).Stats().ACKs < acks+4 {
			return fmt.Errorf("ACKs %d, want ≥ %d", r.client.(*sotw.Client).Stats().ACKs, acks+4)
		}
		return nil
	})
	w.quiesce(r)
	if got := w.revision(); got != rev {
		changed, _ := changedSince(nil, w.keys(), rev)
		t.Fatalf("identical re-push moved etcd from revision %d to %d; changed keys: %v", rev, got, changed)
	}

	stop()
	r2, _ := w.startRelay(w.sim.Addr())
	w.waitSynced(r2)
	w.quiesce(r2)
	if got := w.revision(); got != rev {
		changed, _ := changedSince(nil, w.keys(), rev)
		t.Fatalf("relay restart moved etcd from revision %d to %d; changed keys: %v", rev, got, changed)
	}
	if err := w.matchTruth(); err != nil {
		t.Fatal(err)
	}
}

// TestMalformedResourceNACKed: an invalid resource is NACKed (the
// simulator sees the NACK) and etcd keeps the previous state.
func TestMalformedResourceNACKed(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 20, EndpointsPerService: 2}, true)
	r, _ := w.startRelay(w.sim.Addr())
	w.waitSynced(r)
	w.quiesce(r)
	rev := w.revision()
	for i, c := range []struct {
		typeURL string
		m       istiodsim.Malformation
	}{
		{resourcev3.ClusterType, istiodsim.Undecodable},
		{resourcev3.EndpointType, istiodsim.WrongType},
		{resourcev3.ListenerType, istiodsim.Nameless},
	} {
		if err := w.sim.PushMalformed(c.typeURL, c.m); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(w.t, "NACK reaches the simulator", func() error {
			if n := len(w.sim.Nacks()); n < i+1 {
				return fmt.Errorf("%d NACKs, want %d", n, i+1)
			}
			return nil
		})
		last := w.sim.Nacks()[i]
		if last.TypeURL != c.typeURL || last.Message == "" {
			t.Errorf("NACK %d: %+v, want type %s with a message", i, last, c.typeURL)
		}
	}
	w.quiesce(r)
	if got := w.revision(); got != rev {
		t.Fatalf("malformed pushes moved etcd from revision %d to %d", rev, got)
	}
	if err := w.matchTruth(); err != nil {
		t.Fatalf("state lost after NACK: %v", err)
	}
	// The stream is still usable: a real change after the NACKs gets through.
	if err := w.sim.ChurnEndpoints(3, 1); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(w.t, "change after NACK", w.matchTruth)
}

func outage() time.Duration {
	if testing.Short() {
		return 2 * time.Second
	}
	return 10 * time.Second
}

// TestUpstreamDown: with Istiod gone for the outage every key stays; when it
// comes back (new versions, mostly the same content) only what really
// changed meanwhile is written: one service's endpoints, one service
// deleted (swept after the new stream's complete sync).
func TestUpstreamDown(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 40, EndpointsPerService: 3}, true)
	addr := w.sim.Addr()
	r, _ := w.startRelay(addr)
	w.waitSynced(r)
	w.quiesce(r)
	before, rev := w.keys(), w.revision()

	w.sim.Stop()
	time.Sleep(outage())
	if got := w.revision(); got != rev {
		t.Fatalf("etcd changed while upstream was down: revision %d → %d", rev, got)
	}
	// While down, one service changes upstream and another is deleted.
	if err := w.sim.ChurnEndpoints(5, 2); err != nil {
		t.Fatal(err)
	}
	victim := w.sim.Truth()[9]
	victimKey := keyspace.Service{Namespace: victim.Namespace, Name: victim.Name}
	if err := w.sim.DeleteService(victim.Index); err != nil {
		t.Fatal(err)
	}
	if err := w.sim.Restart(); err != nil { // same address, new instance id
		t.Fatal(err)
	}
	testenv.Eventually(w.t, "converged after reconnect", w.matchTruth)
	w.quiesce(r)
	truth := w.sim.Truth()
	svc5 := keyspace.Service{Namespace: truth[5].Namespace, Name: truth[5].Name}
	changed, gone := changedSince(before, w.keys(), rev)
	for _, k := range gone {
		if !strings.HasPrefix(k, w.space.ServicePrefix(victimKey)) && k != w.space.VIP(victim.VIPs[0]) {
			t.Errorf("reconnect deleted %s, which still exists upstream", k)
		}
	}
	if len(gone) == 0 {
		t.Error("the service deleted while upstream was down is still in etcd")
	}
	for _, k := range changed {
		if !strings.HasPrefix(k, w.space.ServicePrefix(svc5)) && !strings.HasPrefix(k, w.space.SyncedPrefix()) {
			t.Errorf("reconnect rewrote %s, which did not change", k)
		}
	}
	if len(changed) == 0 {
		t.Error("the real change made while upstream was down was not written")
	}
	if s := r.client.(*sotw.Client).Stats(); s.StreamsOpened < 2 {
		t.Errorf("streams opened = %d, want a reconnect", s.StreamsOpened)
	}
}

// TestEtcdDown: with etcd gone for the outage while changes arrive, etcd
// converges to the upstream state once it is back.
func TestEtcdDown(t *testing.T) {
	w := newWorld(t, istiodsim.Options{Services: 40, EndpointsPerService: 3}, true)
	r, _ := w.startRelay(w.sim.Addr())
	w.waitSynced(r)
	w.quiesce(r)

	if err := w.etcd.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(outage())
	for i := 0; time.Now().Before(deadline) && i < 50; i++ {
		if err := w.sim.ChurnEndpoints(i%40, 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(outage() / 10)
	}
	if err := w.sim.DeleteService(39); err != nil {
		t.Fatal(err)
	}
	if _, err := w.sim.AddServices(2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(deadline))
	w.startEtcd()
	testenv.Eventually(w.t, "etcd converges after its outage", w.matchTruth)
	if r.sink.Stats().Retries == 0 {
		t.Error("no write was retried: the outage was not exercised")
	}
}
