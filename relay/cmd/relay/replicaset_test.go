package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/inspect"
)

// haShards and haLeaseTTL size the replica-set tests: the default shard
// count, and a lease short enough that a takeover is quick.
const (
	haShards   = keyspace.DefaultShards
	haLeaseTTL = 2 * time.Second
)

// replicaSet is the world of a multi-process HA test: etcd embedded in the
// test process, the Istiod simulator, and relay processes sharing
// haShards shards.
type replicaSet struct {
	t     *testing.T
	etcd  []string
	c     *clientv3.Client
	space keyspace.Space
	sim   *istiodsim.Sim
	extra []string // flags of every replica
}

func newReplicaSet(t *testing.T, so istiodsim.Options, extra ...string) *replicaSet {
	t.Helper()
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	sim, err := istiodsim.New(so)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	return &replicaSet{t: t, etcd: srv.Endpoints(), c: testenv.Client(t, srv.Endpoints()), space: keyspace.New(""), sim: sim,
		extra: append([]string{"--shards", strconv.Itoa(haShards), "--lease-ttl", haLeaseTTL.String()}, extra...)}
}

// start runs a replica with id.
func (rs *replicaSet) start(id string) *process {
	rs.t.Helper()
	return startProcess(rs.t, id, rs.sim.Addr(), rs.etcd, rs.extra...)
}

// shardView is who leads each shard, read the way an operator reads it
// (`etcdctl get --prefix shards/`: the value of a shard's oldest election
// key is its leader's relay id), and the synced/<shard> markers, at one
// revision.
type shardView struct {
	revision int64
	leader   map[int]string
	marker   map[int]keyspace.Marker
}

func (rs *replicaSet) view() (shardView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := rs.c.Txn(ctx).Then(
		clientv3.OpGet(rs.space.ShardsPrefix(), clientv3.WithPrefix()),
		clientv3.OpGet(rs.space.SyncedPrefix(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return shardView{}, err
	}
	v := shardView{revision: resp.Header.Revision, leader: map[int]string{}, marker: map[int]keyspace.Marker{}}
	oldest := map[int]*mvccpb.KeyValue{}
	for _, kv := range resp.Responses[0].GetResponseRange().GetKvs() {
		k, ok := rs.space.ParseShardElection(string(kv.Key))
		if !ok {
			return v, fmt.Errorf("unexpected key %s", kv.Key)
		}
		if o, seen := oldest[k.Shard]; !seen || kv.CreateRevision < o.CreateRevision {
			oldest[k.Shard] = kv
		}
	}
	for s, kv := range oldest {
		v.leader[s] = string(kv.Value)
	}
	for _, kv := range resp.Responses[1].GetResponseRange().GetKvs() {
		s, ok := rs.space.ParseSynced(string(kv.Key))
		if !ok {
			return v, fmt.Errorf("unexpected key %s", kv.Key)
		}
		m, err := keyspace.ParseMarker(kv.Value)
		if err != nil {
			return v, fmt.Errorf("%s: %w", kv.Key, err)
		}
		v.marker[s] = m
	}
	return v, nil
}

// led returns the shards each relay leads.
func (v shardView) led() map[string][]int {
	out := map[string][]int{}
	for s := range haShards {
		if l, ok := v.leader[s]; ok {
			out[l] = append(out[l], s)
		}
	}
	return out
}

// settled checks that the replicas ps are ready (/readyz), lead every
// shard between them, at most ⌈shards/len(ps)⌉ each, and that every
// shard's synced marker names its leader (the shard is taken over).
func (rs *replicaSet) settled(ps ...*process) error {
	for _, p := range ps {
		if err := p.ready(); err != nil {
			return err
		}
	}
	v, err := rs.view()
	if err != nil {
		return err
	}
	most := (haShards + len(ps) - 1) / len(ps)
	for id, shards := range v.led() {
		if !slices.ContainsFunc(ps, func(p *process) bool { return p.id == id }) {
			return fmt.Errorf("%s, not a live replica, leads shards %v", id, shards)
		}
		if len(shards) > most {
			return fmt.Errorf("%s leads %d shards %v, more than %d", id, len(shards), shards, most)
		}
	}
	for s := range haShards {
		l := v.leader[s]
		if l == "" {
			return fmt.Errorf("shard %d has no leader", s)
		}
		if m, ok := v.marker[s]; !ok || m.Relay != l {
			return fmt.Errorf("shard %d led by %s, marker %+v", s, l, v.marker[s])
		}
	}
	return nil
}

// ready checks the process's /readyz.
func (p *process) ready() error {
	resp, err := http.Get("http://" + p.metrics + "/readyz")
	if err != nil {
		return fmt.Errorf("%s: %w", p.id, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: /readyz %s", p.id, resp.Status)
	}
	return nil
}

// matchTruth checks that etcd holds exactly the simulator's services:
// every spec (hostname, VIPs, ports) and every endpoint.
func (rs *replicaSet) matchTruth() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all, err := inspect.ReadAll(ctx, rs.c, rs.space)
	if err != nil {
		return err
	}
	got := map[string]string{}
	for _, s := range all {
		got[s.Spec.GetNamespace()+"/"+s.Spec.GetName()] = renderStored(s)
	}
	truth := rs.sim.Truth()
	var errs []error
	for _, want := range truth {
		name := want.Namespace + "/" + want.Name
		if g, w := got[name], renderTruth(want); g != w {
			errs = append(errs, fmt.Errorf("%s: etcd %q, upstream %q", name, g, w))
		}
	}
	if len(got) != len(truth) {
		errs = append(errs, fmt.Errorf("etcd holds %d services, upstream %d", len(got), len(truth)))
	}
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more", len(errs)-3))
	}
	return errors.Join(errs...)
}

// renderStored and renderTruth render a service the same way from etcd
// and from the simulator: hostname, VIPs, ports, sorted endpoints.
func renderStored(s inspect.Service) string {
	var ports, eps []string
	for _, p := range s.Spec.GetPorts() {
		ports = append(ports, fmt.Sprintf("%d>%d", p.GetPort(), p.GetTargetPort()))
	}
	for _, sl := range s.Slices {
		for _, e := range sl.GetEndpoints() {
			eps = append(eps, fmt.Sprintf("%s:%d", e.GetAddress(), e.GetPort()))
		}
	}
	return renderService(s.Spec.GetHostname(), s.Spec.GetVips(), ports, eps)
}

func renderTruth(s istiodsim.ServiceTruth) string {
	var ports, eps []string
	for _, p := range s.Ports {
		ports = append(ports, fmt.Sprintf("%d>%d", p.Port, p.TargetPort))
	}
	for _, e := range s.Endpoints {
		eps = append(eps, fmt.Sprintf("%s:%d", e.Address, e.Port))
	}
	return renderService(s.Hostname, s.VIPs, ports, eps)
}

func renderService(host string, vips, ports, eps []string) string {
	slices.Sort(eps)
	return fmt.Sprintf("%s %v ports %v endpoints %v", host, vips, ports, eps)
}

// keyWrites counts, through a watch of the test's own, every put and
// delete under the keyspace from when it starts, by the key's kind.
type keyWrites struct {
	rs     *replicaSet
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	byKind map[string]int
	last   int64 // revision the watch has reached
	err    error
}

// kinds of keys a keyWrites counts: services (specs and slices) and VIPs
// are service values; the rest is bookkeeping.
const (
	kindService = "services"
	kindVIP     = "vips"
)

func (rs *replicaSet) countWrites() *keyWrites {
	rs.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := rs.c.Get(ctx, rs.space.Generation())
	if err != nil {
		cancel()
		rs.t.Fatal(err)
	}
	w := &keyWrites{rs: rs, cancel: cancel, done: make(chan struct{}), byKind: map[string]int{}, last: resp.Header.Revision}
	wch := rs.c.Watch(ctx, rs.space.Prefix(), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithProgressNotify())
	go func() {
		defer close(w.done)
		for r := range wch {
			w.mu.Lock()
			for _, ev := range r.Events {
				kind, _, _ := strings.Cut(strings.TrimPrefix(string(ev.Kv.Key), rs.space.Prefix()), "/")
				w.byKind[kind]++
			}
			w.last = max(w.last, r.Header.Revision)
			if err := r.Err(); err != nil && w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}
	}()
	rs.t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// stop waits until the watch has seen every revision up to now, ends it
// and returns the writes by kind.
func (w *keyWrites) stop() map[string]int {
	t := w.rs.t
	t.Helper()
	resp, err := w.rs.c.Get(context.Background(), w.rs.space.Generation())
	if err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, "the write count's watch catches up", func() bool {
		w.rs.c.RequestProgress(context.Background())
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.last >= resp.Header.Revision || w.err != nil
	})
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("write count's watch: %v", w.err)
	}
	return maps.Clone(w.byKind)
}
