package etcdsink

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// testCluster is the keyspace cluster id of every test.
const testCluster = "test"

var space = keyspace.New(testCluster)

// testOptions are fast options for tests: short windows and backoff.
func testOptions() Options {
	return Options{
		Cluster:                 testCluster,
		Shards:                  4,
		RelayID:                 "relay-0",
		Window:                  5 * time.Millisecond,
		MaxDelay:                50 * time.Millisecond,
		Backoff:                 Backoff{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond},
		RequestTimeout:          2 * time.Second,
		GenerationCheckInterval: 100 * time.Millisecond,
	}
}

func waitSynced(tb testing.TB, s *Sink) {
	tb.Helper()
	select {
	case <-s.Synced():
	case <-time.After(20 * time.Second):
		tb.Fatalf("not synced after 20 s; stats %+v", s.Stats())
	}
}

// svcName is the i-th test service.
func svcName(i int) keyspace.Service {
	return keyspace.Service{Namespace: "ns" + strconv.Itoa(i%7), Name: "svc-" + strconv.Itoa(i)}
}

// vip is the i-th test VIP, in 127.77.0.0/16.
func vip(i int) string { return fmt.Sprintf("127.77.%d.%d", i/250, i%250+1) }

// newService builds a service with nEndpoints backends on 127.0.0.x. gen
// changes the port of every endpoint, i.e. the content of every slice.
func newService(key keyspace.Service, vips []string, nEndpoints, gen int) *model.Service {
	spec := &v1.ServiceSpec{
		Namespace: key.Namespace,
		Name:      key.Name,
		Hostname:  key.Name + "." + key.Namespace + ".svc.cluster.local",
		Vips:      vips,
		Ports:     []*v1.ServicePort{{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP, Name: "http"}},
	}
	eps := make([]*v1.Endpoint, nEndpoints)
	for i := range eps {
		eps[i] = &v1.Endpoint{
			Address: fmt.Sprintf("127.0.%d.%d", i/250, i%250+1),
			Port:    uint32(8080 + gen),
			Weight:  1,
			Health:  v1.Health_HEALTHY,
		}
	}
	return model.NewService(spec, eps)
}

// withEndpointPort returns a copy of svc in which endpoint i has port.
func withEndpointPort(svc *model.Service, i int, port uint32) *model.Service {
	eps := svc.Endpoints()
	out := make([]*v1.Endpoint, len(eps))
	copy(out, eps)
	out[i] = &v1.Endpoint{Address: eps[i].Address, Port: port, Weight: eps[i].Weight, Health: eps[i].Health}
	spec := &v1.ServiceSpec{
		Namespace: svc.Spec.Namespace, Name: svc.Spec.Name, Hostname: svc.Spec.Hostname,
		Vips: svc.Spec.Vips, Ports: svc.Spec.Ports,
	}
	return model.NewService(spec, out)
}

// headerRevision is etcd's current revision.
func headerRevision(tb testing.TB, c clientv3.KV) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Get(ctx, "meshrelay-test-nothing")
	if err != nil {
		tb.Fatal(err)
	}
	return r.Header.Revision
}

// get returns the key's value, or nil when it is absent.
func get(tb testing.TB, c clientv3.KV, key string) *kv {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Get(ctx, key)
	if err != nil {
		tb.Fatal(err)
	}
	if len(r.Kvs) == 0 {
		return nil
	}
	return &kv{value: r.Kvs[0].Value, modRevision: r.Kvs[0].ModRevision}
}

type kv struct {
	value       []byte
	modRevision int64
}

func countPrefix(tb testing.TB, c clientv3.KV, prefix string) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		tb.Fatal(err)
	}
	return r.Count
}

func decodeSpec(tb testing.TB, c clientv3.KV, svc keyspace.Service) *v1.ServiceSpec {
	tb.Helper()
	v := get(tb, c, space.Spec(svc))
	if v == nil {
		tb.Fatalf("no spec for %s", svc)
	}
	spec, err := model.DecodeSpec(v.value)
	if err != nil {
		tb.Fatal(err)
	}
	return spec
}

func decodeSlice(tb testing.TB, c clientv3.KV, svc keyspace.Service, i int) *v1.EndpointSlice {
	tb.Helper()
	v := get(tb, c, space.Slice(svc, i))
	if v == nil {
		tb.Fatalf("no slice %d for %s", i, svc)
	}
	sl, err := model.DecodeSlice(v.value)
	if err != nil {
		tb.Fatal(err)
	}
	return sl
}

// shmDir is a data directory for an etcd the test restarts, on tmpfs when
// available.
func shmDir(tb testing.TB) string {
	tb.Helper()
	root := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		root = "/dev/shm"
	}
	dir, err := os.MkdirTemp(root, "etcdsink-test-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
