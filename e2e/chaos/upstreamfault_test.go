package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// waitAcked waits until the relay has answered every push of the
// simulator.
func (c *cluster) waitAcked() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout)
	defer cancel()
	if err := c.sim.WaitAcked(ctx); err != nil {
		c.t.Fatal(err)
	}
}

// TestEmptyPush: the simulator answers CDS and LDS with no resources, as
// if every service were gone. The relay holds the mass deletion: no
// service key is deleted, agents keep every entry, and when the upstream
// comes back everything is as before.
func TestEmptyPush(t *testing.T) {
	r := &result{Injected: "empty CDS and LDS responses from the simulator (every service gone at once)"}
	report(t, r)
	c, _ := newScaledCluster(t)
	c.settle(500 * time.Millisecond)
	g := c.guard()
	w := c.countWrites()
	for _, typeURL := range []string{istiodsim.ClusterType, istiodsim.ListenerType} {
		if err := c.sim.PushEmpty(typeURL); err != nil {
			t.Fatal(err)
		}
	}
	c.waitAcked()
	c.settle(time.Second)
	n := w.expectNone(t, "or deleted after an empty push (held)")
	c.sim.Repush()
	back := time.Now()
	c.converge("agents hold the simulator's truth after the upstream comes back")
	r.Converge = time.Since(back)
	g.finish(r)
	c.checkNoDeletes()
	r.Writes = fmt.Sprintf("%d keys", n)
}

// TestLateEDS: the relay restarts while the simulator withholds EDS
// (longer than the relay's sync timeout). The endpoints last written stay
// in etcd (unknown is not empty); when EDS answers again, a change made
// meanwhile is written.
func TestLateEDS(t *testing.T) {
	r := &result{Injected: "relay `kill -9` and restart while the simulator withholds EDS past the 2 s sync timeout; an endpoint churned meanwhile"}
	report(t, r)
	c, s := newScaledCluster(t)
	c.settle(500 * time.Millisecond)
	g := c.guard()
	if err := c.sim.Withhold(istiodsim.EndpointType, true); err != nil {
		t.Fatal(err)
	}
	c.relay.kill()
	if err := c.sim.ChurnEndpoints(declaredBy(0, s)[0], 1); err != nil {
		t.Fatal(err)
	}
	w := c.countWrites()
	c.startRelay() // synced once its sync timeout passes without EDS
	time.Sleep(3 * time.Second)
	c.settle(500 * time.Millisecond)
	n := w.expectNone(t, "while EDS was withheld (unknown is not empty)")
	if err := c.sim.Withhold(istiodsim.EndpointType, false); err != nil {
		t.Fatal(err)
	}
	c.sim.Repush()
	answered := time.Now()
	c.converge("agents converge once EDS answers")
	r.Converge = time.Since(answered)
	g.finish(r)
	c.checkNoDeletes()
	r.Writes = fmt.Sprintf("%d keys while withheld", n)
}

// TestHugeService: a declared service grows to many endpoints (100,000 at
// the large scale). It is written whole and every agent holding it
// converges to all of its endpoints; memory stays bounded.
func TestHugeService(t *testing.T) {
	r := &result{Injected: "one declared service grown to 100,000 endpoints (10,000 at the ci scale)"}
	report(t, r)
	c, s := newScaledCluster(t)
	size := 10_000
	if *scaleFlag == "large" {
		size = 100_000
	}
	g := c.guard()
	grown := time.Now()
	if err := c.sim.SetEndpoints(declaredBy(0, s)[0], size); err != nil {
		t.Fatal(err)
	}
	c.converge("agents hold every endpoint of the grown service")
	r.Converge = time.Since(grown)
	g.finish(r)
	c.checkNoDeletes()
	r.Figures = fmt.Sprintf("%d endpoints; %s", size, c.checkRelayRSS())
}
