package etcdsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/etcdcount"
	"github.com/meshrelay/meshrelay/internal/testsupport/tcpproxy"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

const testCluster = "test"

var space = keyspace.New(testCluster)

// runSource starts a Source on c; the test stops it and checks Run's result.
func runSource(t *testing.T, c Client, opts Options) *Source {
	t.Helper()
	opts.Cluster = testCluster
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	src := New(c, opts)
	run := testenv.Run(t, src.Run)
	t.Cleanup(func() {
		if err := run.Stop(); err != nil || !errors.Is(run.Err(), context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", run.Err())
		}
	})
	return src
}

// countingClient records every key an etcd read or watch touches and can
// hold back watches of service prefixes (a "broken" watch).
type countingClient struct {
	*etcdcount.Client

	mu     sync.Mutex
	gate   chan struct{} // non-nil: service watches wait until it is closed
	parked int
}

func newCountingClient(c *clientv3.Client) *countingClient {
	cc := &countingClient{Client: etcdcount.New(c.KV, c.Watcher)}
	cc.BeforeWatch = cc.hold
	return cc
}

// hold parks a service watch while the gate is shut.
func (c *countingClient) hold(ctx context.Context, key string) {
	c.mu.Lock()
	gate := c.gate
	if !strings.HasPrefix(key, space.ServicesPrefix()) {
		gate = nil
	}
	if gate != nil {
		c.parked++
	}
	c.mu.Unlock()
	if gate == nil {
		return
	}
	select {
	case <-gate:
	case <-ctx.Done():
	}
	c.mu.Lock()
	c.parked--
	c.mu.Unlock()
}

// pauseServiceWatches makes new service watches wait; the returned func
// lets them (and later ones) through.
func (c *countingClient) pauseServiceWatches() (release func()) {
	gate := make(chan struct{})
	c.mu.Lock()
	c.gate = gate
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.gate = nil
		c.mu.Unlock()
		close(gate)
	}
}

func (c *countingClient) parkedWatches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.parked
}

// --- writing as the relay does -------------------------------------------

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// service builds a service with n endpoints on 127.0.0.x; base varies the
// content.
func service(svc keyspace.Service, n, base int) *model.Service {
	spec := &v1.ServiceSpec{
		Namespace: svc.Namespace, Name: svc.Name,
		Hostname: svc.Name + "." + svc.Namespace + ".svc.cluster.local",
		Vips:     []string{"127.77.0.1"},
		Ports:    []*v1.ServicePort{{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP}},
	}
	eps := make([]*v1.Endpoint, n)
	for i := range eps {
		eps[i] = &v1.Endpoint{Address: fmt.Sprintf("127.0.0.%d", 1+i%250), Port: uint32(10000 + base + i), Weight: 1}
	}
	return model.NewService(spec, eps)
}

// writeService stores m in one transaction, stamping rev on every value,
// and deletes slices the previous version had beyond m's.
func writeService(t *testing.T, kv clientv3.KV, m *model.Service, rev uint64, oldSlices int) {
	t.Helper()
	now := time.Now().UnixNano()
	m.Spec.Revision, m.Spec.ObservedUnixNano = rev, now
	b, err := model.Marshal(m.Spec)
	if err != nil {
		t.Fatal(err)
	}
	ops := []clientv3.Op{clientv3.OpPut(space.Spec(m.Key), string(b))}
	for i, sl := range m.Slices {
		sl.Revision, sl.ObservedUnixNano = rev, now
		if b, err = model.Marshal(sl); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(space.Slice(m.Key, i), string(b)))
	}
	for i := len(m.Slices); i < oldSlices; i++ {
		ops = append(ops, clientv3.OpDelete(space.Slice(m.Key, i)))
	}
	if _, err := kv.Txn(ctxT(t)).Then(ops...).Commit(); err != nil {
		t.Fatalf("write %s: %v", m.Key, err)
	}
}

// deleteService deletes a service's keys in one transaction.
func deleteService(t *testing.T, kv clientv3.KV, svc keyspace.Service) {
	t.Helper()
	if _, err := kv.Delete(ctxT(t), space.ServicePrefix(svc), clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete %s: %v", svc, err)
	}
}

func put(t *testing.T, kv clientv3.KV, key, value string) {
	t.Helper()
	if _, err := kv.Put(ctxT(t), key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func putMarker(t *testing.T, kv clientv3.KV, shard int, generation string, services int) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{
		"shard": shard, "generation": generation, "relay": "relay-0",
		"services": services, "time": time.Now().UTC().Format(time.RFC3339Nano),
	})
	put(t, kv, space.Synced(shard), string(b))
}

// startG1 starts an etcd holding generation g1 and returns it with a
// writer client.
func startG1(t *testing.T) (*embedetcd.Server, *clientv3.Client) {
	t.Helper()
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	put(t, writer, space.Generation(), "g1")
	return srv, writer
}

// shardOf is svc's shard among keyspace.DefaultShards.
func shardOf(svc keyspace.Service) int { return keyspace.Shard(svc, keyspace.DefaultShards) }

// servicesInShards returns n services of namespace ns, each in a different
// shard among shards.
func servicesInShards(ns string, n, shards int) []keyspace.Service {
	var out []keyspace.Service
	used := map[int]bool{}
	for i := 0; len(out) < n && i < 10000; i++ {
		svc := keyspace.Service{Namespace: ns, Name: fmt.Sprintf("svc-%d", i)}
		if sh := keyspace.Shard(svc, shards); !used[sh] {
			used[sh] = true
			out = append(out, svc)
		}
	}
	return out
}

// --- reading events ------------------------------------------------------

// recorder pulls events from a Source and remembers them per service.
type recorder struct {
	t   *testing.T
	src *Source
	got map[keyspace.Service][]Event
}

func newRecorder(t *testing.T, src *Source) *recorder {
	return &recorder{t: t, src: src, got: map[keyspace.Service][]Event{}}
}

func (r *recorder) add(evs []Event) {
	for _, ev := range evs {
		r.got[ev.Service] = append(r.got[ev.Service], ev)
	}
}

// waitFor pulls events for up to 20 s until the latest event of svc
// satisfies ok, and returns it.
func (r *recorder) waitFor(svc keyspace.Service, what string, ok func(Event) bool) Event {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if evs := r.got[svc]; len(evs) > 0 && ok(evs[len(evs)-1]) {
			return evs[len(evs)-1]
		}
		evs, err := r.src.Next(ctx, 0)
		if err != nil {
			r.t.Fatalf("waiting for %s of %s: %v; got %v; stats %+v", what, svc, err, r.got[svc], r.src.Stats())
		}
		r.add(evs)
	}
}

// poll takes whatever is pending without waiting.
func (r *recorder) poll() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	evs, _ := r.src.Next(ctx, 0)
	r.add(evs)
}

func hasHash(m *model.Service) func(Event) bool {
	h := m.Hash()
	return func(ev Event) bool { return ev.State != nil && ev.State.Hash() == h }
}

func isRemoval(ev Event) bool { return ev.State == nil && !ev.Invalid }

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

// runSourceVia starts a Source reaching the etcd srv through a proxy, to
// break its connections when etcd goes (etcd's graceful stop would wait for
// its streams): replaceEtcd.
func runSourceVia(t *testing.T, srv *embedetcd.Server, opts Options) (*Source, *tcpproxy.Proxy) {
	t.Helper()
	return runSourceViaDetector(t, srv, opts, onReconnect)
}

// detector says how a test expects a rebuilt etcd to be found.
type detector int

const (
	// onReconnect: the source's client tells its connection state and
	// ProbeInterval is set far beyond the test: only the probe at
	// reconnection can find the rebuild.
	onReconnect detector = iota
	// onTicks: the client hides its connection state (a proxy that keeps
	// the agent's connection): only ProbeInterval's ticks can.
	onTicks
)

func (d detector) String() string { return [...]string{"on reconnect", "on ticks"}[d] }

// runSourceViaDetector runs a source reading srv through a proxy, set up
// so that only d can detect a rebuilt etcd.
func runSourceViaDetector(t *testing.T, srv *embedetcd.Server, opts Options, d detector) (*Source, *tcpproxy.Proxy) {
	t.Helper()
	px := startProxy(t, srv.Endpoints()[0])
	c, err := embedetcd.NewClient([]string{px.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if d == onTicks {
		opts.ProbeInterval = 100 * time.Millisecond
		return runSource(t, struct {
			clientv3.KV
			clientv3.Watcher
		}{c, c}, opts), px
	}
	opts.ProbeInterval = time.Hour
	return runSource(t, c, opts), px
}

// replaceEtcd stops srv, reached through px, and starts another etcd on its
// address with opts (empty, or from an older copy's Dir); it returns a
// writer client of the new one.
func replaceEtcd(t *testing.T, srv *embedetcd.Server, px *tcpproxy.Proxy, opts embedetcd.Options) *clientv3.Client {
	t.Helper()
	opts.ClientURL = srv.Endpoints()[0]
	px.Cut()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	writer := testenv.Client(t, testenv.StartEtcd(t, opts).Endpoints())
	t.Cleanup(func() { px.Close() }) // before this etcd stops, so that it need not wait for the source's stream
	return writer
}

// watchLoaded watches svcs, each written as service(svc, 3, 0), and waits
// for their states and for the control loop's watches.
func watchLoaded(t *testing.T, src *Source, svcs []keyspace.Service) *recorder {
	t.Helper()
	rec := newRecorder(t, src)
	for _, s := range svcs {
		src.Watch(s)
		rec.waitFor(s, "initial state", hasHash(service(s, 3, 0)))
	}
	testenv.EventuallyTrue(t, "control loop loaded", func() bool { return src.Stats().WatchesOpen == int64(len(svcs)+2) })
	return rec
}
