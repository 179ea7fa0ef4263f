package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

const testCluster = "test"

var space = keyspace.New(testCluster)

// env is one etcd with a writer client: embedded (newEnv) or in a child
// process (envAt), stopped by the test.
type env struct {
	t      testing.TB
	client *clientv3.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	return envAt(t, srv.Endpoints())
}

// envAt is an env over the etcd at endpoints, with generation g1 written.
func envAt(tb testing.TB, endpoints []string) *env {
	tb.Helper()
	e := &env{t: tb, client: testenv.Client(tb, endpoints)}
	e.put(space.Generation(), "g1")
	return e
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) put(key, value string) {
	e.t.Helper()
	if _, err := e.client.Put(e.ctx(), key, value); err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
}

// markSynced writes a synced marker of generation g1 for every shard.
func (e *env) markSynced() {
	e.t.Helper()
	for shard := range keyspace.DefaultShards {
		b, _ := json.Marshal(map[string]any{"shard": shard, "generation": "g1", "relay": "test", "services": 0})
		e.put(space.Synced(shard), string(b))
	}
}

// testService is service i of namespace ns: VIP 127.77.<i>, port 80 ->
// 8080, endpoints 127.0.<i>.<base+j>.
func testService(ns string, i, endpoints, base int) *model.Service {
	spec := &v1.ServiceSpec{
		Namespace: ns, Name: fmt.Sprintf("svc-%d", i),
		Vips:  []string{vipOf(i).String()},
		Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP}},
	}
	eps := make([]*v1.Endpoint, endpoints)
	for j := range eps {
		eps[j] = &v1.Endpoint{Address: fmt.Sprintf("127.0.%d.%d", i%250, 1+(base+j)%250), Port: 8080, Weight: 1, Health: v1.Health_HEALTHY}
	}
	return model.NewService(spec, eps)
}

func vipOf(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 77, byte(i >> 8), byte(i)}) }

// write stores m as the relay does: spec, slices and vips/ in one
// transaction, every value stamped with rev and now.
func (e *env) write(m *model.Service, rev uint64) {
	e.t.Helper()
	now := time.Now().UnixNano()
	m.Spec.Revision, m.Spec.ObservedUnixNano = rev, now
	b, err := model.Marshal(m.Spec)
	if err != nil {
		e.t.Fatal(err)
	}
	ops := []clientv3.Op{clientv3.OpPut(space.Spec(m.Key), string(b))}
	for i, sl := range m.Slices {
		sl.Revision, sl.ObservedUnixNano = rev, now
		if b, err = model.Marshal(sl); err != nil {
			e.t.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(space.Slice(m.Key, i), string(b)))
	}
	for _, vip := range m.Spec.Vips {
		ops = append(ops, clientv3.OpPut(space.VIP(vip), m.Key.String()))
	}
	if _, err := e.client.Txn(e.ctx()).Then(ops...).Commit(); err != nil {
		e.t.Fatalf("write %s: %v", m.Key, err)
	}
}

// remove deletes a service's keys and VIPs.
func (e *env) remove(m *model.Service) {
	e.t.Helper()
	ops := []clientv3.Op{clientv3.OpDelete(space.ServicePrefix(m.Key), clientv3.WithPrefix())}
	for _, vip := range m.Spec.Vips {
		ops = append(ops, clientv3.OpDelete(space.VIP(vip)))
	}
	if _, err := e.client.Txn(e.ctx()).Then(ops...).Commit(); err != nil {
		e.t.Fatalf("remove %s: %v", m.Key, err)
	}
}

// running is an agent run by a test.
type running struct {
	*Agent
	stop func()
}

// start runs an agent until the returned stop function or the test's end.
func start(t *testing.T, c clientv3.KV, w clientv3.Watcher, dp datapath.Datapath, opts Options) *running {
	t.Helper()
	opts.Cluster = testCluster
	if opts.Logger == nil {
		opts.Logger = testenv.Logger(t)
	}
	if opts.Source.ProbeInterval == 0 {
		opts.Source.ProbeInterval = 200 * time.Millisecond
	}
	a, err := New(struct {
		clientv3.KV
		clientv3.Watcher
	}{c, w}, dp, opts)
	if err != nil {
		t.Fatal(err)
	}
	run := testenv.Run(t, a.Run)
	stop := sync.OnceFunc(func() {
		if err := run.Stop(); err != nil || !errors.Is(run.Err(), context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", run.Err())
		}
	})
	t.Cleanup(stop)
	return &running{Agent: a, stop: stop}
}

// content renders a datapath state as "tcp/VIP:port -> addr:port*slots ...".
func content(st datapath.State) []string {
	var out []string
	for k := range st.Frontends {
		counts := map[string]int{}
		for _, b := range st.SlotTable(k) {
			counts[st.Backends[datapath.BackendKey{BackendId: b}].String()]++
		}
		var bs []string
		for a, n := range counts {
			bs = append(bs, fmt.Sprintf("%s*%d", a, n))
		}
		sort.Strings(bs)
		out = append(out, k.String()+" -> "+strings.Join(bs, " "))
	}
	sort.Strings(out)
	return out
}

// expected renders what services should put in the datapath, computed from
// their endpoints directly (port 80, equal weights: one slot each).
func expected(svcs ...*model.Service) []string {
	var out []string
	for _, m := range svcs {
		var bs []string
		for _, ep := range m.Endpoints() {
			bs = append(bs, fmt.Sprintf("%s:%d*1", ep.Address, ep.Port))
		}
		sort.Strings(bs)
		out = append(out, "tcp/"+m.Spec.Vips[0]+":80 -> "+strings.Join(bs, " "))
	}
	sort.Strings(out)
	return out
}

// holds waits until dp holds exactly want.
func holds(t *testing.T, dp datapath.Datapath, want []string) {
	t.Helper()
	testenv.Eventually(t, "datapath content", func() error {
		st, err := dp.Dump(context.Background())
		if err != nil {
			return err
		}
		if got := content(st); !slices.Equal(got, want) {
			return fmt.Errorf("datapath holds\n %q\nwant\n %q", got, want)
		}
		return nil
	})
}

func newMemory() *datapath.Memory {
	return datapath.NewMemory(datapath.MemoryOptions{Logger: slog.New(slog.DiscardHandler)})
}
