package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// TestSimulatorRestartUnchangedContent: the Istiod simulator restarts as a
// new instance (new versions and nonces) with the same mesh. The relay
// reconnects and writes no service key; the agents write no entry. A
// change after it is written (the count can be non-zero).
func TestSimulatorRestartUnchangedContent(t *testing.T) {
	r := &result{Injected: "simulator stopped and restarted on its address: new versions, same content"}
	report(t, r)
	c, s := newScaledCluster(t)
	c.settle(500 * time.Millisecond)
	entries0 := c.entriesWritten()
	g := c.guard()
	w := c.countWrites()
	v0 := c.sim.Version()
	if err := c.sim.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	testenv.EventuallyTrue(t, "the relay reconnects", func() bool { return c.sim.Streams() > 0 })
	c.waitAcked()
	r.Converge = time.Since(restarted) // reconnected, every push ACKed
	c.settle(time.Second)
	n := w.expectNone(t, "after a restart with unchanged content")
	if c.sim.Version() == v0 {
		t.Fatalf("simulator version %s unchanged by the restart", v0)
	}
	r.Writes = fmt.Sprintf("%d keys, %d entries", n, c.entriesWritten()-entries0)
	if d := c.entriesWritten() - entries0; d != 0 {
		t.Errorf("agents wrote %d datapath entries after a restart with unchanged content, want 0", d)
	}
	g.finish(r)

	// The count sees a real change.
	w = c.countWrites()
	if err := c.sim.ChurnEndpoints(declaredBy(0, s)[0], 1); err != nil {
		t.Fatal(err)
	}
	c.converge("a change after the restart")
	c.settle(500 * time.Millisecond)
	if n, _ := w.stop(); n == 0 {
		t.Error("a change after the restart wrote no service key: the write count is blind")
	}
	c.checkNoDeletes()
}

// entriesWritten is the datapath entries every agent wrote so far.
func (c *cluster) entriesWritten() int {
	n := 0
	for _, a := range c.agents {
		n += a.rec.Entries()
	}
	return n
}

// TestRelayKilledAndRestarted: the relay (one replica) gets SIGKILL; an
// endpoint changes while it is down; it starts again. The agents keep
// every entry meanwhile; the restarted relay writes the changed service
// only.
func TestRelayKilledAndRestarted(t *testing.T) {
	r := &result{Injected: "relay `kill -9`, one endpoint churned while it is down, relay started again"}
	report(t, r)
	c, s := newScaledCluster(t)
	c.settle(500 * time.Millisecond)
	g := c.guard()
	w := c.countWrites()
	c.relay.kill()
	if err := c.sim.ChurnEndpoints(declaredBy(0, s)[0], 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // no relay at all for a while
	restarted := time.Now()
	c.startRelay()
	c.converge("agents converge after the relay restart")
	r.Converge = time.Since(restarted)
	c.settle(500 * time.Millisecond)
	n, err := w.stop()
	if err != nil {
		t.Fatal(err)
	}
	r.Writes = fmt.Sprintf("%d keys", n)
	// One service changed: its spec and one slice at most.
	if n == 0 || n > 2 {
		t.Errorf("restarted relay wrote %d service keys for one changed service, want 1 or 2", n)
	}
	g.finish(r)
	c.checkNoDeletes()
	r.Figures = c.checkRelayRSS()
}

// TestPushBurst: the simulator pushes at ten times the normal rate for a
// while. The relay's memory stays bounded, the agents' queues stay bounded
// by their services and their change sets by their rate limit, and
// everything converges after.
func TestPushBurst(t *testing.T) {
	r := &result{Injected: "endpoint churn at 10× the normal rate (normal: 10 pushes/s)"}
	report(t, r)
	c, s := newScaledCluster(t)
	// The same agents again in a process of their own, for their CPU time.
	var declared [][]int
	for i := range s.Agents {
		declared = append(declared, declaredBy(i, s))
	}
	ac := c.startAgentsChild(declared)
	testenv.Eventually(t, "child agents converge at start", func() error { return ac.converged(c) })
	cpu0, err := cpuTime(ac.pid())
	if err != nil {
		t.Fatal(err)
	}
	g := c.guard()
	const normal = 10 // pushes per second
	interval := time.Second / (10 * normal)
	start := time.Now()
	deadline := start.Add(s.Burst)
	pushes, maxDepth := 0, 0
	for next := start; next.Before(deadline); next = start.Add(time.Duration(pushes) * interval) {
		time.Sleep(time.Until(next))
		i := pushes % s.Agents
		if err := c.sim.ChurnEndpoints(declaredBy(i, s)[pushes%s.Declared], 1); err != nil {
			t.Fatal(err)
		}
		pushes++
		if pushes%10 == 0 {
			for _, a := range c.agents {
				maxDepth = max(maxDepth, a.Stats().QueueDepth)
			}
		}
	}
	ended := time.Now()
	c.converge("agents converge after the burst")
	r.Converge = time.Since(ended)
	g.finish(r)
	c.checkNoDeletes()
	if maxDepth > s.Declared {
		t.Errorf("an agent's queue reached %d, more than its %d services", maxDepth, s.Declared)
	}
	testenv.Eventually(t, "child agents converge after the burst", func() error { return ac.converged(c) })
	cpu1, err := cpuTime(ac.pid())
	if err != nil {
		t.Fatal(err)
	}
	burst := ended.Sub(start)
	cpu := cpu1 - cpu0
	// A bound on a runaway (a busy loop, unbounded work per push), not a
	// timing claim: all the agents together stay under one core.
	if cpu > burst+r.Converge+time.Second {
		t.Errorf("%d agents used %v of CPU over a %v burst: more than one core", s.Agents, cpu, burst)
	}
	states, err := ac.state()
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		if len(st.Deleted) > 0 {
			t.Errorf("child agent %d deleted frontends %v", i, firstN(st.Deleted, 5))
		}
	}
	applies := int64(0)
	for _, a := range c.agents {
		applies += a.Stats().Applies
	}
	// Each agent's change sets are limited to MaxAppliesPerSecond (200 by
	// default); the burst cannot exceed it whatever the push rate.
	if limit := int64(float64(len(c.agents)) * 200 * (burst + r.Converge + 2*time.Second).Seconds()); applies > limit {
		t.Errorf("%d change sets applied, past the rate limit's %d", applies, limit)
	}
	r.Writes = fmt.Sprintf("%d change sets", applies)
	r.Figures = fmt.Sprintf("%d pushes in %v; max agent queue %d; %d agents' CPU %.1f%% of one core; %s",
		pushes, burst.Round(time.Millisecond), maxDepth, s.Agents, 100*cpu.Seconds()/burst.Seconds(), c.checkRelayRSS())
}

// TestMalformedPush: the simulator sends an invalid resource of every
// type (undecodable bytes in CDS and EDS, a nameless listener in LDS and a
// route of the wrong type in RDS). The relay NACKs each and keeps its last
// good state: no service key is written, agents keep every entry, and the
// next valid change goes through.
func TestMalformedPush(t *testing.T) {
	r := &result{Injected: "an invalid resource pushed on CDS, EDS, LDS and RDS (undecodable, nameless, wrong type)"}
	report(t, r)
	c, s := newScaledCluster(t)
	c.settle(500 * time.Millisecond)
	g := c.guard()
	w := c.countWrites()
	pushes := []struct {
		typeURL string
		m       istiodsim.Malformation
	}{
		{istiodsim.ClusterType, istiodsim.Undecodable},
		{istiodsim.EndpointType, istiodsim.Undecodable},
		{istiodsim.ListenerType, istiodsim.Nameless},
		{istiodsim.RouteType, istiodsim.WrongType},
	}
	for _, p := range pushes {
		if err := c.sim.PushMalformed(p.typeURL, p.m); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, "the relay NACKs every malformed push", func() error {
		if n := len(c.sim.Nacks()); n < len(pushes) {
			return fmt.Errorf("%d NACKs, want %d", n, len(pushes))
		}
		return nil
	})
	c.settle(500 * time.Millisecond)
	n := w.expectNone(t, "after malformed pushes")
	if err := c.sim.ChurnEndpoints(declaredBy(0, s)[0], 1); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	c.converge("the next valid change goes through")
	r.Converge = time.Since(changed)
	g.finish(r)
	c.checkNoDeletes()
	r.Writes = fmt.Sprintf("%d keys for the malformed pushes", n)
	r.Figures = fmt.Sprintf("%d NACKs", len(c.sim.Nacks()))
}
