package relay

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/inspect"
)

// world is one simulator, one embedded etcd and relays wired between them,
// all on loopback, all stopped by t.Cleanup.
type world struct {
	t      *testing.T
	sim    *istiodsim.Sim
	etcd   *embedetcd.Server
	etcdOp embedetcd.Options
	client *clientv3.Client
	space  keyspace.Space
	mode   Mode // of the relays startRelay starts
}

func newWorld(t *testing.T, so istiodsim.Options, startSim bool) *world {
	t.Helper()
	sim, err := istiodsim.New(so)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, sim: sim, space: keyspace.New("")}
	if startSim {
		if err := sim.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(sim.Stop)
	dir := filepath.Join(t.TempDir(), "etcd")
	w.etcdOp = embedetcd.Options{Dir: dir}
	w.startEtcd()
	w.etcdOp.ClientURL = w.etcd.Endpoints()[0] // restart on the same port
	w.client = testenv.Client(t, w.etcd.Endpoints())
	return w
}

func (w *world) startEtcd() {
	w.t.Helper()
	w.etcd = testenv.StartEtcd(w.t, w.etcdOp)
}

// startRelay runs a relay until the returned stop function or the test's end.
func (w *world) startRelay(addr string) (*Relay, func()) {
	w.t.Helper()
	return w.startRelayWith(addr, nil)
}

// startRelayWith is startRelay with the test's options changed by edit.
func (w *world) startRelayWith(addr string, edit func(*Options)) (*Relay, func()) {
	w.t.Helper()
	opts := Options{
		Istiod:      addr,
		Mode:        w.mode,
		RelayID:     "relay-test",
		SyncTimeout: 2 * time.Second,
		Sink:        etcdsink.Options{Window: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond, RequestTimeout: time.Second},
		Logger:      testenv.Logger(w.t),
	}
	if edit != nil {
		edit(&opts)
	}
	r, err := New(w.client, opts)
	if err != nil {
		w.t.Fatal(err)
	}
	run := testenv.Run(w.t, r.Run)
	return r, func() {
		if err := run.Stop(); err != nil {
			w.t.Errorf("relay.Run: %v", err)
		}
	}
}

func (w *world) waitSynced(r *Relay) {
	w.t.Helper()
	select {
	case <-r.Synced():
	case <-time.After(60 * time.Second):
		w.t.Fatalf("relay not synced after 60 s; ready: %v", fmt.Sprint(r.Ready()))
	}
}

// revision is etcd's current revision: it moves on every write.
func (w *world) revision() int64 {
	w.t.Helper()
	resp, err := w.client.Get(context.Background(), "/meshrelay-probe")
	if err != nil {
		w.t.Fatal(err)
	}
	return resp.Header.Revision
}

// keys returns every meshrelay key with its mod revision.
func (w *world) keys() map[string]int64 {
	w.t.Helper()
	resp, err := w.client.Get(context.Background(), w.space.Prefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		w.t.Fatal(err)
	}
	out := make(map[string]int64, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = kv.ModRevision
	}
	return out
}

// changedSince lists the keys modified after rev, and those that vanished.
func changedSince(before, after map[string]int64, rev int64) (changed, gone []string) {
	for k, mod := range after {
		if mod > rev {
			changed = append(changed, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			gone = append(gone, k)
		}
	}
	sort.Strings(changed)
	sort.Strings(gone)
	return changed, gone
}

// matchTruth compares what etcd holds with the simulator's truth.
func (w *world) matchTruth() error {
	ctx := context.Background()
	all, err := inspect.ReadAll(ctx, w.client, w.space)
	if err != nil {
		return err
	}
	truth := w.sim.Truth()
	if len(all) != len(truth) {
		return fmt.Errorf("etcd holds %d services, simulator %d", len(all), len(truth))
	}
	byName := map[string]inspect.Service{}
	for _, s := range all {
		byName[s.Spec.GetNamespace()+"/"+s.Spec.GetName()] = s
	}
	for _, want := range truth {
		got, ok := byName[want.Namespace+"/"+want.Name]
		if !ok {
			return fmt.Errorf("service %s/%s missing from etcd", want.Namespace, want.Name)
		}
		if err := compareService(got, want); err != nil {
			return fmt.Errorf("service %s/%s: %w", want.Namespace, want.Name, err)
		}
		vip, err := w.client.Get(ctx, w.space.VIP(want.VIPs[0]))
		if err != nil {
			return err
		}
		if len(vip.Kvs) != 1 || string(vip.Kvs[0].Value) != want.Namespace+"/"+want.Name {
			return fmt.Errorf("vips/%s = %v, want %s/%s", want.VIPs[0], vip.Kvs, want.Namespace, want.Name)
		}
	}
	return nil
}

func compareService(got inspect.Service, want istiodsim.ServiceTruth) error {
	spec := got.Spec
	if spec.GetHostname() != want.Hostname {
		return fmt.Errorf("hostname %q, want %q", spec.GetHostname(), want.Hostname)
	}
	if !slices.Equal(spec.GetVips(), want.VIPs) {
		return fmt.Errorf("vips %v, want %v", spec.GetVips(), want.VIPs)
	}
	if len(spec.GetPorts()) != len(want.Ports) {
		return fmt.Errorf("%d ports, want %d", len(spec.GetPorts()), len(want.Ports))
	}
	for i, p := range spec.GetPorts() {
		wp := want.Ports[i]
		if p.GetPort() != wp.Port || p.GetTargetPort() != wp.TargetPort {
			return fmt.Errorf("port %d: %d->%d, want %d->%d", i, p.GetPort(), p.GetTargetPort(), wp.Port, wp.TargetPort)
		}
	}
	if int(spec.GetEndpointSlices()) != len(got.Slices) {
		return fmt.Errorf("spec says %d slices, etcd holds %d", spec.GetEndpointSlices(), len(got.Slices))
	}
	var eps []string
	for _, sl := range got.Slices {
		for _, e := range sl.GetEndpoints() {
			var tps []string
			for sp, tp := range e.GetTargetPorts() {
				tps = append(tps, fmt.Sprintf("%d>%d", sp, tp))
			}
			sort.Strings(tps)
			eps = append(eps, fmt.Sprintf("%s:%d w%d %s %s [%s]", e.GetAddress(), e.GetPort(), e.GetWeight(),
				localityPrefix(e.GetLocality()), e.GetHealth(), strings.Join(tps, " ")))
		}
	}
	var wantEps []string
	for _, e := range want.Endpoints {
		var tps []string
		for sp, tp := range e.TargetPorts {
			tps = append(tps, fmt.Sprintf("%d>%d", sp, tp))
		}
		sort.Strings(tps)
		wantEps = append(wantEps, fmt.Sprintf("%s:%d w%d %s %s [%s]", e.Address, e.Port, e.Weight,
			e.Region+"/"+e.Zone, e.Health, strings.Join(tps, " ")))
	}
	sort.Strings(eps)
	sort.Strings(wantEps)
	if !slices.Equal(eps, wantEps) {
		return fmt.Errorf("endpoints\n got %v\nwant %v", eps, wantEps)
	}
	return nil
}

// localityPrefix drops an empty trailing subzone: "r/z/" → "r/z".
func localityPrefix(l string) string { return strings.TrimSuffix(l, "/") }
