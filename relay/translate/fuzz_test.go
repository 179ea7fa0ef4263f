package translate

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshrelay/meshrelay/internal/model"
)

// FuzzSotWIndex applies any sequence of upserts and removals of valid-typed
// CDS, EDS, LDS and RDS resources (drawn from two random pools so that
// names collide and content differs) and checks that the Index never
// panics, that every service stays within the documented limits
// (docs/contract.md section 3: at most model.MaxSliceEndpoints endpoints per
// slice, endpointSlices equal to the slices, sorted distinct VIPs, sorted
// ports) and that the result equals a full Translate of the final state.
func FuzzSotWIndex(f *testing.F) {
	f.Add(uint64(1), []byte{0, 4, 8, 1, 5, 2, 3, 0x80, 6})
	f.Add(uint64(7), []byte{0x81, 0, 1, 2, 3, 0x82, 0x83, 0x40, 0x41, 0x42, 0x43})
	f.Add(uint64(42), []byte{3, 2, 1, 0, 0xc0, 0xc1, 0xc2, 0xc3, 0, 1, 2, 3})
	f.Fuzz(func(t *testing.T, seed uint64, ops []byte) {
		if len(ops) > 512 {
			ops = ops[:512]
		}
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		pools := []*Inputs{randomInputs(rng, 12), randomInputs(rng, 12)}
		names := func(in *Inputs, typ int) []string {
			switch typ {
			case 0:
				return slices.Sorted(maps.Keys(in.Clusters))
			case 1:
				return slices.Sorted(maps.Keys(in.Endpoints))
			case 2:
				return slices.Sorted(maps.Keys(in.Listeners))
			}
			return slices.Sorted(maps.Keys(in.Routes))
		}
		typeURLs := []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

		x := NewIndex()
		state := newInputs()
		for i, op := range ops {
			typ := int(op % 4)
			pool := pools[op>>6&1]
			ns := names(pool, typ)
			if len(ns) == 0 {
				continue
			}
			name := ns[int(op>>2&0xf)%len(ns)]
			remove := op&0x80 != 0 && i%2 == 0
			var msg proto.Message
			switch typ {
			case 0:
				msg = setOrDelete(state.Clusters, pool.Clusters, name, remove)
			case 1:
				msg = setOrDelete(state.Endpoints, pool.Endpoints, name, remove)
			case 2:
				msg = setOrDelete(state.Listeners, pool.Listeners, name, remove)
			case 3:
				msg = setOrDelete(state.Routes, pool.Routes, name, remove)
			}
			if remove {
				x.Apply(typeURLs[typ], nil, []string{name})
			} else {
				x.Apply(typeURLs[typ], map[string]proto.Message{name: msg}, nil)
			}
		}
		for _, k := range x.Services() {
			s, ok := x.Service(k)
			if !ok {
				t.Fatalf("listed service %s does not translate", k)
			}
			checkLimits(t, s)
		}
		assertSame(t, x, state)
	})
}

// setOrDelete removes name from state, or sets it to pool's resource, and
// returns that resource.
func setOrDelete[V proto.Message](state, pool map[string]V, name string, remove bool) proto.Message {
	if remove {
		delete(state, name)
	} else {
		state[name] = pool[name]
	}
	return pool[name]
}

// checkLimits fails t when s breaks a documented limit of the value schema.
func checkLimits(t *testing.T, s *model.Service) {
	t.Helper()
	if int(s.Spec.GetEndpointSlices()) != len(s.Slices) {
		t.Fatalf("%s/%s: endpointSlices %d, %d slices", s.Spec.GetNamespace(), s.Spec.GetName(), s.Spec.GetEndpointSlices(), len(s.Slices))
	}
	for i, sl := range s.Slices {
		if n := len(sl.GetEndpoints()); n == 0 || n > model.MaxSliceEndpoints || int(sl.GetSlice()) != i {
			t.Fatalf("slice %d: %d endpoints, index %d", i, n, sl.GetSlice())
		}
	}
	var prev netip.Addr
	for i, v := range s.Spec.GetVips() {
		a, err := netip.ParseAddr(v)
		if err != nil {
			t.Fatalf("VIP %q: %v", v, err)
		}
		if i > 0 && a.Compare(prev) <= 0 {
			t.Fatalf("VIPs not sorted and distinct: %v", s.Spec.GetVips())
		}
		prev = a
	}
	for i := 1; i < len(s.Spec.GetPorts()); i++ {
		if s.Spec.Ports[i-1].GetPort() >= s.Spec.Ports[i].GetPort() {
			t.Fatalf("ports not sorted and distinct: %v", s.Spec.GetPorts())
		}
	}
}
