package etcdsink

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// watchedService is a watcher's view of one service's keys.
type watchedService struct {
	spec   *v1.ServiceSpec
	slices map[keyspace.ServiceKey]*v1.EndpointSlice
}

// check assembles the service as a reader does (the spec's generation
// only) and reports whether it is whole: every slice the spec names is
// there, and every endpoint has the same port, i.e. comes from one content
// version. It returns that port and the endpoint count.
func (v *watchedService) check(svc keyspace.Service) (port uint32, endpoints int, err error) {
	if v.spec == nil {
		return 0, 0, nil
	}
	for i := range int(v.spec.GetEndpointSlices()) {
		sl := v.slices[keyspace.ServiceKey{Service: svc, Kind: keyspace.KindSlice, Slice: i, Gen: v.spec.GetSliceGeneration()}]
		if sl == nil {
			return 0, 0, fmt.Errorf("slice %d of generation %d missing", i, v.spec.GetSliceGeneration())
		}
		for _, e := range sl.GetEndpoints() {
			if port == 0 {
				port = e.GetPort()
			}
			if e.GetPort() != port {
				return 0, 0, fmt.Errorf("slices of two versions: ports %d and %d", port, e.GetPort())
			}
			endpoints++
		}
	}
	return port, endpoints, nil
}

// TestStagedWriteNeverShowsAMix: a service alternating between 100 and
// 100,000 endpoints (20,000 with -short) is written whole every time, and a
// watcher applying the events revision by revision never sees the spec
// name slices of two content versions, or a slice missing.
func TestStagedWriteNeverShowsAMix(t *testing.T) {
	big := 100_000
	if testing.Short() {
		big = 20_000
	}
	f := newFixture(t, testOptions())
	svc := svcName(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := headerRevision(t, f.c)
	wch := f.c.Watch(ctx, space.ServicePrefix(svc), clientv3.WithPrefix(), clientv3.WithRev(start+1))

	view := &watchedService{slices: map[keyspace.ServiceKey]*v1.EndpointSlice{}}
	seen := map[uint32]int{} // port → endpoint count seen whole
	var lastErr error
	apply := func(resp clientv3.WatchResponse) {
		evs := resp.Events
		for i, ev := range evs {
			k, ok := space.ParseServiceKey(string(ev.Kv.Key))
			if !ok {
				t.Errorf("watcher saw a non-canonical key %q", ev.Kv.Key)
				continue
			}
			switch {
			case ev.Type == clientv3.EventTypeDelete && k.Kind == keyspace.KindSpec:
				view.spec = nil
			case ev.Type == clientv3.EventTypeDelete:
				delete(view.slices, k)
			case k.Kind == keyspace.KindSpec:
				spec, err := model.DecodeSpec(ev.Kv.Value)
				if err != nil {
					t.Fatal(err)
				}
				view.spec = spec
			default:
				sl, err := model.DecodeSlice(ev.Kv.Value)
				if err != nil {
					t.Fatal(err)
				}
				view.slices[k] = sl
			}
			if i+1 < len(evs) && evs[i+1].Kv.ModRevision == ev.Kv.ModRevision {
				continue // the rest of this revision's transaction
			}
			port, n, err := view.check(svc)
			if err != nil {
				lastErr = fmt.Errorf("revision %d: %w", ev.Kv.ModRevision, err)
				t.Error(lastErr)
				continue
			}
			if port != 0 {
				seen[port] = n
			}
		}
	}

	versions := 4
	for v := 1; v <= versions; v++ {
		n := 100
		if v%2 == 0 {
			n = big
		}
		port := uint32(8080 + v)
		f.sink.Set(svc, newService(svc, []string{vip(1)}, n, v), time.Now())
		if v == 1 {
			f.sink.Complete([]keyspace.Service{svc})
		}
		deadline := time.After(2 * time.Minute)
		for seen[port] != n {
			select {
			case resp := <-wch:
				if err := resp.Err(); err != nil {
					t.Fatal(err)
				}
				apply(resp)
			case <-deadline:
				t.Fatalf("version %d (%d endpoints) never seen whole; seen %v, stats %+v", v, n, seen, f.sink.Stats())
			}
		}
	}
	if lastErr != nil {
		t.Fatalf("a watcher saw a mixed or incomplete service: %v", lastErr)
	}
	want := int64(1 + big/model.MaxSliceEndpoints)
	testenv.EventuallyTrue(t, "old generations deleted", func() bool { return countPrefix(t, f.c, space.ServicePrefix(svc)) == want })
	if st := f.sink.Stats(); st.Oversized != 0 {
		t.Fatalf("oversized: %+v", st)
	}
}
