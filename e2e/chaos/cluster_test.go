package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/dpfake"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/tcpproxy"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

var space = keyspace.New("")

// cluster is one fault case's world: the Istiod simulator (in the test
// process, so that it can be changed and restarted), etcd and one relay in
// child processes, and node agents in the test process over recorded
// memory datapaths (so that every entry they delete is seen).
type cluster struct {
	t       *testing.T
	sim     *istiodsim.Sim
	etcd    *child
	etcdURL string
	client  *clientv3.Client // the test's own, direct client
	relay   *child
	agents  []*agent
}

// newCluster starts the simulator, etcd and a relay, and waits until the
// relay has synced.
func newCluster(t *testing.T, so istiodsim.Options) *cluster {
	t.Helper()
	c := newRelaylessCluster(t, so)
	c.startRelay()
	return c
}

// newRelaylessCluster starts the simulator and etcd; the case starts its
// relays.
func newRelaylessCluster(t *testing.T, so istiodsim.Options) *cluster {
	t.Helper()
	sim, err := istiodsim.New(so)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	c := &cluster{t: t, sim: sim}
	c.startEtcd("")
	c.client = testenv.Client(t, []string{c.etcdURL})
	return c
}

// startEtcd starts an empty etcd (on url when set) in a fresh directory.
func (c *cluster) startEtcd(url string) {
	c.t.Helper()
	dir := filepath.Join(c.t.TempDir(), "etcd")
	c.etcd = startChild(c.t, "etcd", "etcd", etcdConfig{ClientURL: url, Dir: dir})
	var r etcdReady
	c.etcd.readyInfo(&r)
	c.etcdURL = r.URL
}

// startRelay starts a relay and waits until it has synced.
func (c *cluster) startRelay() {
	c.t.Helper()
	c.relay = startChild(c.t, "relay", "relay", relayConfig{Etcd: c.etcdURL, Istiod: c.sim.Addr(), ID: "relay-chaos"})
}

// keys are the keyspace names of the simulator's services with these
// indexes.
func (c *cluster) keys(indexes []int) []keyspace.Service {
	var out []keyspace.Service
	for _, s := range c.sim.Truth() {
		if slices.Contains(indexes, s.Index) {
			out = append(out, keyspace.Service{Namespace: s.Namespace, Name: s.Name})
		}
	}
	return out
}

// agent is a node agent in the test process with its recorded datapath.
type agent struct {
	*nodeagent.Agent
	rec      *dpfake.Recorder
	declared []int
	proxy    *tcpproxy.Proxy // between the agent and etcd
}

// addProxy is a proxy to etcd that the test's cleanup closes.
func (c *cluster) addProxy() *tcpproxy.Proxy {
	c.t.Helper()
	px, err := tcpproxy.Start(c.etcdURL)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { px.Close() })
	return px
}

// addAgent starts a node agent loading the services indexes (and, when
// opts says so, services on demand). It reaches etcd through a proxy the
// case can cut or slow down.
func (c *cluster) addAgent(declared []int, opts nodeagent.Options, mo datapath.MemoryOptions) *agent {
	c.t.Helper()
	px := c.addProxy()
	ec, err := embedetcd.NewClient([]string{px.URL()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { ec.Close() })
	mo.Logger = slog.New(slog.DiscardHandler)
	rec := dpfake.NewRecorder(datapath.NewMemory(mo))
	opts.Services = append(opts.Services, c.keys(declared)...)
	opts.NodeName = fmt.Sprintf("node-%d", len(c.agents))
	// Source.ProbeInterval keeps its default: a wiped etcd is found by the
	// probe at reconnection, as in production.
	if opts.Logger == nil {
		opts.Logger = testenv.Logger(c.t, "c", opts.NodeName)
	}
	a, err := nodeagent.New(ec, rec, opts)
	if err != nil {
		c.t.Fatal(err)
	}
	testenv.Run(c.t, a.Run)
	ag := &agent{Agent: a, rec: rec, declared: declared, proxy: px}
	c.agents = append(c.agents, ag)
	return ag
}

// truthLines renders what a datapath must hold for the simulator's
// services indexes: one line per frontend and backend, sorted.
func (c *cluster) truthLines(indexes []int) []string {
	var out []string
	for _, s := range c.sim.Truth() {
		if !slices.Contains(indexes, s.Index) {
			continue
		}
		for _, p := range s.Ports {
			fe := fmt.Sprintf("tcp/%s:%d", s.VIPs[0], p.Port)
			for _, ep := range s.Endpoints {
				out = append(out, fmt.Sprintf("%s -> %s:%d", fe, ep.Address, ep.TargetPorts[p.Port]))
			}
		}
	}
	sort.Strings(out)
	return out
}

// heldLines renders what a datapath holds in the form of truthLines,
// after checking that it is consistent.
func heldLines(ctx context.Context, dp datapath.Datapath) ([]string, datapath.State, error) {
	st, err := dp.Dump(ctx)
	if err != nil {
		return nil, st, err
	}
	if err := st.Check(); err != nil {
		return nil, st, fmt.Errorf("inconsistent datapath: %w", err)
	}
	var out []string
	for k := range st.Frontends {
		seen := map[string]bool{}
		for _, b := range st.SlotTable(k) {
			be := st.Backends[datapath.BackendKey{BackendId: b}].String()
			if !seen[be] {
				seen[be] = true
				out = append(out, k.String()+" -> "+be)
			}
		}
	}
	sort.Strings(out)
	return out, st, nil
}

// diff describes how got differs from want (empty when equal).
func diff(got, want []string) string {
	var missing, extra []string
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			extra = append(extra, g)
		}
	}
	if len(missing)+len(extra) == 0 {
		return ""
	}
	short := func(l []string) string {
		if len(l) > 3 {
			return strings.Join(l[:3], ", ") + fmt.Sprintf(" and %d more", len(l)-3)
		}
		return strings.Join(l, ", ")
	}
	return fmt.Sprintf("%d missing [%s], %d unexpected [%s]", len(missing), short(missing), len(extra), short(extra))
}

// converge waits until every agent's datapath holds exactly the
// simulator's truth for its declared services, and returns how long that
// took.
func (c *cluster) converge(what string) time.Duration {
	c.t.Helper()
	start := time.Now()
	testenv.Eventually(c.t, what, func() error {
		var errs []error
		for i, a := range c.agents {
			got, _, err := heldLines(context.Background(), a.rec)
			if err != nil {
				errs = append(errs, fmt.Errorf("agent %d: %w", i, err))
				continue
			}
			if d := diff(got, c.truthLines(a.declared)); d != "" {
				errs = append(errs, fmt.Errorf("agent %d: %s", i, d))
			}
		}
		return errors.Join(errs...)
	})
	return time.Since(start)
}

// frontendsDeleted is every frontend an agent deleted so far.
func (c *cluster) frontendsDeleted() []string {
	var out []string
	for _, a := range c.agents {
		out = append(out, a.rec.DeletedFrontends()...)
	}
	return out
}

// guard watches every agent's datapath while a fault is in effect: every
// frontend held when it starts (but those excepted: a service the case
// deletes) must stay held, with at least one backend, until stop. It records the fewest entries seen.
type guard struct {
	c        *cluster
	before   []map[string]bool // per agent: frontends held at the start
	entries0 int
	stopc    chan struct{}
	done     chan struct{}

	mu         sync.Mutex
	minEntries int
	lost       []string
}

func (c *cluster) guard(except ...string) *guard {
	c.t.Helper()
	g := &guard{c: c, stopc: make(chan struct{}), done: make(chan struct{}), minEntries: -1}
	for _, a := range c.agents {
		st, err := a.rec.Dump(context.Background())
		if err != nil {
			c.t.Fatal(err)
		}
		fes := map[string]bool{}
		for k := range st.Frontends {
			if !slices.Contains(except, k.String()) {
				fes[k.String()] = true
			}
		}
		g.before = append(g.before, fes)
		g.entries0 += len(st.Frontends) + len(st.Slots) + len(st.Backends)
	}
	go g.run()
	return g
}

func (g *guard) run() {
	defer close(g.done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		total := 0
		for i, a := range g.c.agents {
			st, err := a.rec.Dump(context.Background())
			if err != nil {
				continue
			}
			total += len(st.Frontends) + len(st.Slots) + len(st.Backends)
			for fe := range g.before[i] {
				k, ok := findFrontend(st, fe)
				if !ok || len(st.SlotTable(k)) == 0 {
					g.mu.Lock()
					g.lost = append(g.lost, fmt.Sprintf("agent %d: %s", i, fe))
					g.mu.Unlock()
				}
			}
		}
		g.mu.Lock()
		if g.minEntries < 0 || total < g.minEntries {
			g.minEntries = total
		}
		g.mu.Unlock()
		select {
		case <-g.stopc:
			return
		case <-tick.C:
		}
	}
}

func findFrontend(st datapath.State, name string) (datapath.FrontendKey, bool) {
	for k := range st.Frontends {
		if k.String() == name {
			return k, true
		}
	}
	return datapath.FrontendKey{}, false
}

// stop ends the watch and fails the test if a frontend went missing or
// empty; it returns the entries held at the start and the fewest seen.
func (g *guard) stop() (before, least int) {
	g.c.t.Helper()
	close(g.stopc)
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.lost) > 0 {
		g.c.t.Errorf("frontends removed or emptied while the fault was in effect: %v", firstN(g.lost, 5))
	}
	return g.entries0, g.minEntries
}

// finish stops the guard and records the entries kept in r.
func (g *guard) finish(r *result) {
	g.c.t.Helper()
	before, least := g.stop()
	r.Kept = fmt.Sprintf("%d / %d", least, before)
}

// churnFor changes one endpoint of a declared service every 100 ms for d
// and returns the number of changes.
func (c *cluster) churnFor(d time.Duration, s scale) int {
	c.t.Helper()
	deadline := time.Now().Add(d)
	n := 0
	for time.Now().Before(deadline) {
		if err := c.sim.ChurnEndpoints(declaredBy(n%s.Agents, s)[n%s.Declared], 1); err != nil {
			c.t.Error(err)
			return n
		}
		n++
		time.Sleep(100 * time.Millisecond)
	}
	return n
}

func firstN(l []string, n int) []string {
	if len(l) > n {
		return append(l[:n:n], fmt.Sprintf("and %d more", len(l)-n))
	}
	return l
}

// writeCounter counts the service keys (specs and slices) put or deleted
// in etcd from when it starts, through a watch of the test's own.
type writeCounter struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	n      int
	err    error
}

func (c *cluster) countWrites() *writeCounter {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := c.client.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		cancel()
		c.t.Fatal(err)
	}
	w := &writeCounter{cancel: cancel, done: make(chan struct{})}
	wch := c.client.Watch(ctx, space.ServicesPrefix(), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	go func() {
		defer close(w.done)
		for r := range wch {
			w.mu.Lock()
			w.n += len(r.Events)
			if r.Err() != nil && w.err == nil {
				w.err = r.Err()
			}
			w.mu.Unlock()
		}
	}()
	c.t.Cleanup(w.stopNow)
	return w
}

func (w *writeCounter) stopNow() { w.cancel(); <-w.done }

// stop ends the count and returns it.
func (w *writeCounter) stop() (int, error) {
	w.stopNow()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.err
}

// expectNone stops the count and fails the test unless no service key
// was written (what says when); it returns the count.
func (w *writeCounter) expectNone(t *testing.T, what string) int {
	t.Helper()
	n, err := w.stop()
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d service keys written %s, want 0", n, what)
	}
	return n
}

// settle waits until etcd's revision has not moved for quiet: the relay
// has written what it had to.
func (c *cluster) settle(quiet time.Duration) {
	c.t.Helper()
	var last int64
	since := time.Now()
	testenv.EventuallyTrue(c.t, "etcd quiet", func() bool {
		resp, err := c.client.Get(context.Background(), space.Generation())
		if err != nil {
			since = time.Now()
			return false
		}
		if resp.Header.Revision != last {
			last, since = resp.Header.Revision, time.Now()
		}
		return time.Since(since) >= quiet
	})
}
