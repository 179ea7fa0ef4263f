package delta

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
	"github.com/meshrelay/meshrelay/relay/translate/workload"
)

// consumer feeds a workload.Index from the client, as the relay does, and
// records what each update changed.
type consumer struct {
	mu       sync.Mutex
	index    *workload.Index
	dirty    []keyspace.Service // every service reported dirty, in order
	updates  int
	changes  int // updates with upserts or removals
	complete int // updates marked complete
}

func (c *consumer) OnUpdate(_ context.Context, u Update) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updates++
	if len(u.Upserted)+len(u.Removed) > 0 {
		c.changes++
	}
	if u.Complete {
		c.complete++
	}
	c.dirty = append(c.dirty, c.index.Apply(u.TypeURL, u.Upserted, u.Removed)...)
}

// take returns the counters and takes the dirty services recorded so far.
func (c *consumer) take() (dirty []keyspace.Service, changes, complete int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dirty, c.dirty = c.dirty, nil
	slices.SortFunc(dirty, func(a, b keyspace.Service) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(dirty), c.changes, c.complete
}

// model returns what the index translates now, by key.
func (c *consumer) model() map[keyspace.Service]*v1.ServiceSpec {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[keyspace.Service]*v1.ServiceSpec{}
	for _, k := range c.index.Services() {
		s, _ := c.index.Service(k)
		out[k] = s.Spec
	}
	return out
}

// diffTruth compares the index with the Sim's truth: "" when equal.
func (c *consumer) diffTruth(sim *istiodsim.Sim) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	truth := sim.Truth()
	if got := c.index.Services(); len(got) != len(truth) {
		return fmt.Sprintf("%d services, truth has %d", len(got), len(truth))
	}
	for _, st := range truth {
		k := keyspace.Service{Namespace: st.Namespace, Name: st.Name}
		s, ok := c.index.Service(k)
		if !ok {
			return fmt.Sprintf("service %s missing", k)
		}
		want := &v1.ServiceSpec{Namespace: st.Namespace, Name: st.Name, Hostname: st.Hostname, Vips: st.VIPs}
		for _, p := range st.Ports {
			want.Ports = append(want.Ports, &v1.ServicePort{Port: p.Port, TargetPort: p.TargetPort, Protocol: v1.Protocol_TCP})
		}
		got := &v1.ServiceSpec{Namespace: s.Spec.Namespace, Name: s.Spec.Name, Hostname: s.Spec.Hostname, Vips: s.Spec.Vips, Ports: s.Spec.Ports}
		if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
			return fmt.Sprintf("spec of %s (-truth +got):\n%s", k, d)
		}
		var wantEps []*v1.Endpoint
		for _, e := range st.Endpoints {
			wantEps = append(wantEps, &v1.Endpoint{Address: e.Address, Port: e.Port, Weight: e.Weight,
				Locality: e.Region + "/" + e.Zone + "/", Health: e.Health, TargetPorts: e.TargetPorts})
		}
		slices.SortFunc(wantEps, func(a, b *v1.Endpoint) int {
			return netip.MustParseAddr(a.Address).Compare(netip.MustParseAddr(b.Address))
		})
		if d := cmp.Diff(wantEps, s.Endpoints(), protocmp.Transform()); d != "" {
			return fmt.Sprintf("endpoints of %s (-truth +got):\n%s", k, d)
		}
	}
	return ""
}

func startSim(t *testing.T, opts istiodsim.Options) *istiodsim.Sim {
	t.Helper()
	sim, err := istiodsim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	return sim
}

func startConsumer(t *testing.T, addr string) (*Client, *consumer) {
	t.Helper()
	cons := &consumer{index: workload.NewIndex()}
	env := map[string]string{"POD_IP": "127.0.0.5", "POD_NAME": "relay-0", "POD_NAMESPACE": "meshrelay", "NODE_NAME": "node-a"}
	return runClient(t, addr, NodeFromEnv(func(k string) string { return env[k] }, ""), 0, cons), cons
}

func key(i int) keyspace.Service {
	return keyspace.Service{Namespace: "ns-0", Name: fmt.Sprintf("svc-%d", i)}
}

func TestSimSyncAndChanges(t *testing.T) {
	sim := startSim(t, istiodsim.Options{Services: 5, EndpointsPerService: 3, PortsPerService: 2, Weights: true})
	c, cons := startConsumer(t, sim.Addr())

	testenv.EventuallyTrue(t, "initial sync", func() bool { return c.Stats().Complete && cons.diffTruth(sim) == "" })
	dirty, _, complete := cons.take()
	if len(dirty) != 5 || complete == 0 {
		t.Fatalf("initial sync: dirty %v, %d complete updates; want 5 services, complete", dirty, complete)
	}
	if subs := sim.DeltaSubscriptions(); len(subs) != 2 || len(subs[0].InitialResourceVersions) != 0 ||
		subs[0].Node != "ztunnel~127.0.0.5~relay-0.meshrelay~meshrelay.svc.cluster.local" {
		t.Fatalf("subscriptions %+v: want Address and Authorization, no initial versions, ztunnel node", subs)
	}

	steps := []struct {
		name  string
		do    func() error
		dirty []keyspace.Service
	}{
		{"workload add", func() error { return sim.SetEndpoints(1, 5) }, []keyspace.Service{key(1)}},
		{"workload delete", func() error { return sim.SetEndpoints(2, 1) }, []keyspace.Service{key(2)}},
		{"workload move", func() error { return sim.MoveEndpoint(3, 4) }, []keyspace.Service{key(3), key(4)}},
		{"service add", func() error { _, err := sim.AddServices(1); return err }, []keyspace.Service{key(5)}},
		{"service delete", func() error { return sim.DeleteService(0) }, []keyspace.Service{key(0)}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		testenv.EventuallyTrue(t, st.name, func() bool { return cons.diffTruth(sim) == "" })
		dirty, _, _ := cons.take()
		if d := cmp.Diff(st.dirty, dirty); d != "" {
			t.Errorf("%s: dirty services (-want +got):\n%s", st.name, d)
		}
	}
	if _, ok := cons.model()[key(0)]; ok {
		t.Error("deleted service still translated")
	}
	if n := len(sim.Nacks()); n != 0 {
		t.Errorf("%d NACKs of valid pushes: %+v", n, sim.Nacks())
	}
}

func TestSimReconnectSendsInitialVersions(t *testing.T) {
	sim := startSim(t, istiodsim.Options{Services: 4, EndpointsPerService: 2})
	c, cons := startConsumer(t, sim.Addr())
	testenv.EventuallyTrue(t, "initial sync", func() bool { return c.Stats().Complete && cons.diffTruth(sim) == "" })
	_, changesBefore, _ := cons.take()
	held := c.Stats().Resources[AddressType]
	if held != 4+4*2 {
		t.Fatalf("client holds %d addresses, want 12", held)
	}

	if err := sim.Restart(); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, "resubscription", func() bool { return len(sim.DeltaSubscriptions()) == 2 })
	testenv.EventuallyTrue(t, "complete again", func() bool { return c.Stats().StreamsOpened == 2 && c.Stats().Complete })
	subs := sim.DeltaSubscriptions()
	var addr istiodsim.DeltaSubscription
	for _, s := range subs {
		if s.TypeURL == istiodsim.AddressType {
			addr = s
		}
	}
	if len(addr.InitialResourceVersions) != held {
		t.Fatalf("reconnect sent %d initial_resource_versions, want %d", len(addr.InitialResourceVersions), held)
	}
	if _, ok := addr.InitialResourceVersions[istiodsim.ServiceAddressName("ns-0", "svc-0.ns-0.svc.cluster.local")]; !ok {
		t.Errorf("initial versions lack svc-0: %v", addr.InitialResourceVersions)
	}
	dirty, changes, _ := cons.take()
	if len(dirty) != 0 || changes != changesBefore {
		t.Errorf("reconnect with nothing changed produced %d changes, dirty %v", changes-changesBefore, dirty)
	}

	// A change made while disconnected arrives as a difference only.
	sim.Stop()
	testenv.EventuallyTrue(t, "disconnect", func() bool { return !c.Connected() })
	if diff := cons.diffTruth(sim); diff != "" {
		t.Fatalf("state changed while disconnected: %s", diff)
	}
	if err := sim.SetEndpoints(2, 3); err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(sim.Addr()); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, "difference after reconnect", func() bool { return cons.diffTruth(sim) == "" })
	dirty, _, _ = cons.take()
	if d := cmp.Diff([]keyspace.Service{key(2)}, dirty); d != "" {
		t.Errorf("after reconnect, dirty (-want +got):\n%s", d)
	}
}

func TestSimMalformedAddressIsNACKed(t *testing.T) {
	sim := startSim(t, istiodsim.Options{Services: 3, EndpointsPerService: 2})
	c, cons := startConsumer(t, sim.Addr())
	testenv.EventuallyTrue(t, "initial sync", func() bool { return c.Stats().Complete && cons.diffTruth(sim) == "" })
	before := cons.model()
	cons.take()

	for i, m := range []istiodsim.Malformation{istiodsim.Undecodable, istiodsim.WrongType, istiodsim.Nameless} {
		if err := sim.PushMalformedAddress(m); err != nil {
			t.Fatal(err)
		}
		testenv.EventuallyTrue(t, "NACK of "+m.String(), func() bool { return len(sim.Nacks()) == i+1 })
		n := sim.Nacks()[i]
		if n.TypeURL != istiodsim.AddressType || n.Message == "" || n.Nonce == "" {
			t.Errorf("%s: NACK %+v: want Address type, a reason and the nonce", m, n)
		}
	}
	if d := cmp.Diff(before, cons.model(), protocmp.Transform()); d != "" {
		t.Errorf("state changed by malformed pushes (-before +after):\n%s", d)
	}
	if dirty, _, _ := cons.take(); len(dirty) != 0 {
		t.Errorf("malformed pushes dirtied %v", dirty)
	}
	if st := c.Stats(); st.NACKs != 3 || st.LastError == nil {
		t.Errorf("stats %+v: want 3 NACKs and the last reason", st)
	}
	// The next valid push applies.
	if err := sim.SetEndpoints(1, 4); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, "valid push after NACKs", func() bool { return cons.diffTruth(sim) == "" })
}
