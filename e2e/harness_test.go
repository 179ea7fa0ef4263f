package e2e

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
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/tcpproxy"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/relay"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
)

var space = keyspace.New("")

// world is a simulator, an embedded etcd and a relay between them, all on
// loopback and stopped by the test.
type world struct {
	t      *testing.T
	sim    *istiodsim.Sim
	etcd   *embedetcd.Server
	url    string
	client *clientv3.Client
	relay  *relay.Relay
}

func newWorld(t *testing.T, so istiodsim.Options) *world {
	t.Helper()
	return newWorldMode(t, so, relay.ModeSotW)
}

// newWorldMode is newWorld with a relay consuming the simulator's mode
// upstream API.
func newWorldMode(t *testing.T, so istiodsim.Options, mode relay.Mode) *world {
	t.Helper()
	w := &world{t: t, sim: newSim(t, so)}
	w.startEtcd("")
	w.url = w.etcd.Endpoints()[0]
	w.client = testenv.Client(t, w.etcd.Endpoints())
	w.startRelay(w.client, mode)
	return w
}

// newSim starts a simulator that the test stops.
func newSim(t *testing.T, so istiodsim.Options) *istiodsim.Sim {
	t.Helper()
	sim, err := istiodsim.New(so)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	return sim
}

// startRelay runs a relay writing through c until the test ends, and
// waits for its first complete sync.
func (w *world) startRelay(c *clientv3.Client, mode relay.Mode) {
	w.t.Helper()
	w.runRelay(c, relayOptions(w.sim.Addr(), mode))
}

// relayOptions are the e2e relay's options: short windows and checks.
func relayOptions(istiod string, mode relay.Mode) relay.Options {
	return relay.Options{
		Istiod:      istiod,
		Mode:        mode,
		RelayID:     "relay-e2e",
		SyncTimeout: 2 * time.Second,
		Sink: etcdsink.Options{
			Window: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond,
			RequestTimeout: time.Second, GenerationCheckInterval: 200 * time.Millisecond,
		},
	}
}

// runRelay runs a relay with opts writing through c until the test ends,
// and waits for its first complete sync.
func (w *world) runRelay(c *clientv3.Client, opts relay.Options) {
	t := w.t
	t.Helper()
	opts.Logger = testenv.Logger(t, "c", "relay")
	r, err := relay.New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	w.relay = r
	testenv.Run(t, r.Run)
	select {
	case <-r.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("relay not synced within 30 s")
	}
}

// startEtcd starts an empty etcd (on url when set) in a fresh directory.
func (w *world) startEtcd(url string) {
	w.t.Helper()
	w.etcd = testenv.StartEtcd(w.t, embedetcd.Options{ClientURL: url, Dir: filepath.Join(w.t.TempDir(), "etcd")})
}

// wipe replaces etcd by an empty one on the same address, as after the loss
// of an ephemeral etcd: the relay rewrites it under a new generation.
func (w *world) wipe() {
	w.t.Helper()
	if err := w.etcd.Close(); err != nil {
		w.t.Fatal(err)
	}
	w.startEtcd(w.url)
}

// svcKey is the keyspace name of the simulator's service i.
func (w *world) svcKey(i int) keyspace.Service {
	for _, s := range w.sim.Truth() {
		if s.Index == i {
			return keyspace.Service{Namespace: s.Namespace, Name: s.Name}
		}
	}
	w.t.Fatalf("no service %d in the simulator", i)
	return keyspace.Service{}
}

// expected renders what the datapath must hold for the simulator's services
// with the given indexes that still exist: per port a frontend
// tcp/VIP:port with every endpoint at its target port for that port, and
// its weight.
func (w *world) expected(indexes ...int) map[string]map[string]uint32 {
	out := map[string]map[string]uint32{}
	for _, s := range w.sim.Truth() {
		if !slices.Contains(indexes, s.Index) {
			continue
		}
		for _, p := range s.Ports {
			bs := map[string]uint32{}
			for _, ep := range s.Endpoints {
				bs[fmt.Sprintf("%s:%d", ep.Address, ep.TargetPorts[p.Port])] = ep.Weight
			}
			out[fmt.Sprintf("tcp/%s:%d", s.VIPs[0], p.Port)] = bs
		}
	}
	return out
}

// compare checks that st holds exactly want: the same frontends, each with
// the same backends, holding slots in proportion to their weights.
func compare(st datapath.State, want map[string]map[string]uint32) error {
	if err := st.Check(); err != nil {
		return fmt.Errorf("inconsistent datapath: %w", err)
	}
	got := map[string]map[string]uint32{}
	for k := range st.Frontends {
		slots := map[string]uint32{}
		for _, b := range st.SlotTable(k) {
			slots[st.Backends[datapath.BackendKey{BackendId: b}].String()]++
		}
		got[k.String()] = slots
	}
	var errs []string
	for fe, wb := range want {
		gb, ok := got[fe]
		if !ok {
			errs = append(errs, "missing "+fe)
			continue
		}
		if len(gb) != len(wb) {
			errs = append(errs, fmt.Sprintf("%s: %d backends, want %d", fe, len(gb), len(wb)))
			continue
		}
		var ref string
		for a := range wb {
			ref = a
			break
		}
		for a, weight := range wb {
			slots, ok := gb[a]
			switch {
			case !ok:
				errs = append(errs, fmt.Sprintf("%s: backend %s missing", fe, a))
			case uint64(slots)*uint64(wb[ref]) != uint64(gb[ref])*uint64(weight):
				errs = append(errs, fmt.Sprintf("%s: %s has %d slots for weight %d, %s %d for %d", fe, a, slots, weight, ref, gb[ref], wb[ref]))
			}
		}
	}
	for fe := range got {
		if _, ok := want[fe]; !ok {
			errs = append(errs, "unexpected "+fe)
		}
	}
	sort.Strings(errs)
	if len(errs) > 0 {
		if len(errs) > 5 {
			errs = append(errs[:5], fmt.Sprintf("and %d more", len(errs)-5))
		}
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// converges waits until dp holds what the simulator's services indexes
// should produce.
func (w *world) converges(dp datapath.Datapath, indexes ...int) {
	w.t.Helper()
	testenv.Eventually(w.t, "datapath matches the simulator", func() error {
		st, err := dp.Dump(context.Background())
		if err != nil {
			return err
		}
		return compare(st, w.expected(indexes...))
	})
}

// quiesce waits until the simulator's pushes are ACKed, the relay has
// written them, and a little longer for the agents' flush windows.
func (w *world) quiesce() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.sim.WaitAcked(ctx); err != nil {
		w.t.Fatal(err)
	}
	testenv.Eventually(w.t, "relay idle", func() error {
		if d := w.relay.Stats().QueueDepth; d != 0 {
			return fmt.Errorf("relay queue depth %d", d)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // relay MaxDelay + agent flush window
}

// agent is a node agent run by a test.
type agent struct {
	*nodeagent.Agent
	stop func()
}

// startAgent runs a node agent over c and dp until stop or the test's end.
func startAgent(t *testing.T, c etcdClient, dp datapath.Datapath, opts nodeagent.Options) *agent {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testenv.Logger(t, "c", "agent")
	}
	// Source.ProbeInterval keeps its default: a wiped etcd is found by the
	// probe at reconnection, as in production.
	a, err := nodeagent.New(c, dp, opts)
	if err != nil {
		t.Fatal(err)
	}
	run := testenv.Run(t, a.Run)
	stop := sync.OnceFunc(func() {
		if err := run.Stop(); err != nil || !errors.Is(run.Err(), context.Canceled) {
			t.Errorf("agent Run returned %v, want context.Canceled", run.Err())
		}
	})
	t.Cleanup(stop)
	return &agent{Agent: a, stop: stop}
}

type etcdClient interface {
	clientv3.KV
	clientv3.Watcher
}

func newMemory() *datapath.Memory {
	return datapath.NewMemory(datapath.MemoryOptions{Logger: slog.New(slog.DiscardHandler)})
}

// startProxy forwards a loopback port to the etcd client URL target.
func startProxy(t *testing.T, target string) *tcpproxy.Proxy {
	t.Helper()
	p, err := tcpproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// dialVia returns an etcd client that reaches etcd through url.
func dialVia(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	c, err := embedetcd.NewClient([]string{url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
