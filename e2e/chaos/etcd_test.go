package chaos

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// maxRelayRSS bounds the relay process's peak resident memory at the
// scales of this suite (its real data is a few MiB).
const maxRelayRSS = 512 << 20

// newScaledCluster is a cluster of the current scale with its agents
// started and converged.
func newScaledCluster(t *testing.T) (*cluster, scale) {
	t.Helper()
	s := currentScale()
	c := newCluster(t, simOptions(s))
	c.addScaledAgents(s)
	return c, s
}

// simOptions sizes the simulator for scale s.
func simOptions(s scale) istiodsim.Options {
	return istiodsim.Options{Services: s.Services, EndpointsPerService: s.Endpoints}
}

// addScaledAgents starts the agents of scale s and waits until they
// converge.
func (c *cluster) addScaledAgents(s scale) {
	c.t.Helper()
	for i := range s.Agents {
		c.addAgent(declaredBy(i, s), nodeagent.Options{}, datapath.MemoryOptions{})
	}
	c.converge("agents converge at start")
}

// checkRelayRSS fails the test when the relay's peak RSS is past the bound
// and returns it as a figure.
func (c *cluster) checkRelayRSS() string {
	c.t.Helper()
	rss, err := peakRSS(c.relay.pid())
	if err != nil {
		c.t.Fatal(err)
	}
	if rss > maxRelayRSS {
		c.t.Errorf("relay peak RSS %d MiB, past the %d MiB bound", rss>>20, maxRelayRSS>>20)
	}
	return fmt.Sprintf("relay peak RSS %d MiB", rss>>20)
}

// checkNoDeletes fails the test when an agent deleted a frontend.
func (c *cluster) checkNoDeletes() {
	c.t.Helper()
	if d := c.frontendsDeleted(); len(d) > 0 {
		c.t.Errorf("frontends deleted: %v", firstN(d, 5))
	}
}

// TestEtcdKilledAndRestartedEmpty: etcd gets SIGKILL; an endpoint changes
// while it is down; an empty etcd starts on the same address. The relay
// repopulates it under a new generation; the agents re-list and converge
// (the change included) and remove nothing meanwhile.
func TestEtcdKilledAndRestartedEmpty(t *testing.T) {
	r := &result{Injected: "etcd `kill -9`, an endpoint churned while it is down, an empty etcd started on the same address"}
	report(t, r)
	c, s := newScaledCluster(t)
	g := c.guard()
	c.etcd.kill()
	if err := c.sim.ChurnEndpoints(declaredBy(0, s)[0], 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the relay and agents notice the loss
	c.startEtcd(c.etcdURL)
	restarted := time.Now()
	testenv.Eventually(t, "every agent sees the new generation", func() error {
		for i, a := range c.agents {
			if n := a.Stats().Source.GenerationChanges; n == 0 {
				return fmt.Errorf("agent %d: no generation change seen", i)
			}
		}
		return nil
	})
	c.converge("agents converge after the etcd rebuild")
	r.Converge = time.Since(restarted)
	g.finish(r)
	c.checkNoDeletes()
	specs, err := c.client.Get(context.Background(), space.ServicesPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	r.Writes = fmt.Sprintf("%d keys rewritten", specs.Count)
	r.Figures = c.checkRelayRSS()
}

// TestEtcdCompactedWhileAgentsDisconnected: every agent loses etcd (its
// connections dropped), services change and one is deleted, and etcd
// compacts the history meanwhile. Back, the agents converge and remove
// only the deleted service's frontends.
func TestEtcdCompactedWhileAgentsDisconnected(t *testing.T) {
	r := &result{Injected: "agent↔etcd connections cut (proxy), churn and one delete, then etcd compacted past them"}
	report(t, r)
	c, s := newScaledCluster(t)
	gone := declaredBy(0, s)[1]
	var goneFE []string
	for _, st := range c.sim.Truth() {
		if st.Index == gone {
			for _, p := range st.Ports {
				goneFE = append(goneFE, fmt.Sprintf("tcp/%s:%d", st.VIPs[0], p.Port))
			}
		}
	}
	g := c.guard(goneFE...)
	for _, a := range c.agents {
		a.proxy.SetDown(true)
	}
	for i := range 2 * s.Agents {
		if err := c.sim.ChurnEndpoints(declaredBy(i%s.Agents, s)[0], 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.sim.DeleteService(gone); err != nil {
		t.Fatal(err)
	}
	c.settle(500 * time.Millisecond)
	resp, err := c.client.Put(context.Background(), "/chaos-unrelated", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	for _, a := range c.agents {
		a.proxy.SetDown(false)
	}
	healed := time.Now()
	c.converge("agents converge after the compaction")
	r.Converge = time.Since(healed)
	g.finish(r)
	for _, d := range c.frontendsDeleted() {
		if !slices.Contains(goneFE, d) {
			t.Errorf("frontend %s deleted; only the deleted service's %v may be", d, goneFE)
		}
	}
	compactions := int64(0)
	for _, a := range c.agents {
		compactions += a.Stats().Source.Compactions
	}
	if compactions == 0 {
		t.Error("no agent saw a compacted watch: the case did not exercise compaction")
	}
	r.Figures = fmt.Sprintf("%d compacted watches re-listed", compactions)
}

// TestAgentEtcdPartitionHealed: the network between every agent and etcd
// is partitioned (connections dropped, new ones refused) for a while as
// services change, then healed. The agents keep every entry meanwhile and
// converge after, with no change lost.
func TestAgentEtcdPartitionHealed(t *testing.T) {
	r := &result{Injected: "agent↔etcd partition (proxy drops and refuses connections) during churn, then healed"}
	report(t, r)
	c, s := newScaledCluster(t)
	g := c.guard()
	for _, a := range c.agents {
		a.proxy.SetDown(true)
	}
	partition := 2 * time.Second
	if *scaleFlag == "large" {
		partition = 15 * time.Second
	}
	churns := c.churnFor(partition, s)
	for _, a := range c.agents {
		a.proxy.SetDown(false)
	}
	healed := time.Now()
	c.converge("agents converge after the partition")
	r.Converge = time.Since(healed)
	g.finish(r)
	c.checkNoDeletes()
	for i, a := range c.agents {
		if ok, why := a.Ready(); !ok {
			t.Errorf("agent %d not ready after the heal: %s", i, why)
		}
	}
	r.Figures = fmt.Sprintf("partition %v, %d churns during it", partition, churns)
}

// TestEtcdSlowWithManyWatchers: every agent's link to etcd gets injected
// latency while many more watchers hang on etcd through slow links, and
// services change. The agents keep every entry and converge, late.
func TestEtcdSlowWithManyWatchers(t *testing.T) {
	r := &result{Injected: "200 ms per chunk each way on every agent↔etcd link (proxy), many extra watchers through a slow proxy, churn"}
	report(t, r)
	c, s := newScaledCluster(t)
	watchers := 500
	if *scaleFlag == "large" {
		watchers = 5_000
	}
	slow := c.addProxy()
	wc := testenv.Client(t, []string{slow.URL()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	truth := c.sim.Truth()
	for i := range watchers {
		st := truth[i%len(truth)]
		wc.Watch(ctx, space.ServicePrefix(c.keys([]int{st.Index})[0]), clientv3.WithPrefix())
	}
	// Watches are created one at a time on a stream: create them all
	// first, then slow their link and the agents'.
	if _, err := wc.Get(ctx, space.Generation()); err != nil {
		t.Fatal(err)
	}
	g := c.guard()
	slow.SetLatency(200 * time.Millisecond)
	for _, a := range c.agents {
		a.proxy.SetLatency(200 * time.Millisecond)
	}
	changed := time.Now()
	for i := range s.Agents {
		if err := c.sim.ChurnEndpoints(declaredBy(i, s)[0], 1); err != nil {
			t.Fatal(err)
		}
	}
	c.converge("agents converge through the slow links")
	r.Converge = time.Since(changed)
	if r.Converge < 200*time.Millisecond {
		t.Errorf("converged in %v, less than the injected latency: the fault was not in effect", r.Converge)
	}
	g.finish(r)
	c.checkNoDeletes()
	r.Figures = fmt.Sprintf("%d extra watchers; %s", watchers, c.checkRelayRSS())
}

// TestEtcdPaused: etcd gets SIGSTOP (alive but answering nothing, as a
// hung or swapping etcd) while services change, then SIGCONT. Agents keep
// every entry meanwhile; the relay's writes go through after, with no
// change lost.
func TestEtcdPaused(t *testing.T) {
	r := &result{Injected: "etcd SIGSTOP during churn, SIGCONT after"}
	report(t, r)
	c, s := newScaledCluster(t)
	g := c.guard()
	c.etcd.signal(syscall.SIGSTOP)
	paused := 3 * time.Second
	if *scaleFlag == "large" {
		paused = 15 * time.Second
	}
	churns := c.churnFor(paused, s)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := c.client.Get(ctx, space.Generation())
	cancel()
	c.etcd.signal(syscall.SIGCONT)
	if err == nil {
		t.Fatal("etcd answered while stopped: the fault was not in effect")
	}
	resumed := time.Now()
	c.converge("agents converge after etcd resumes")
	r.Converge = time.Since(resumed)
	g.finish(r)
	c.checkNoDeletes()
	r.Figures = fmt.Sprintf("paused %v, %d churns meanwhile; %s", paused, churns, c.checkRelayRSS())
}
