package workload

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
)

// fuzzAddress builds a small Address from two bytes: names, keys, addresses
// and ports come from small pools so that operations collide often.
func fuzzAddress(kind, b byte) (string, *workloadapi.Address) {
	if kind%2 == 0 {
		n := int(b % 4)
		ns, name := "ns", fmt.Sprintf("s%d", n%3) // s0 twice: two hostnames for one key
		a := svc(ns, name, []string{fmt.Sprintf("127.77.0.%d", b%5+1)}, uint32(80+b%2), uint32(8080*int(b%3/2)))
		a.GetService().Hostname = fmt.Sprintf("h%d", n)
		if b&0x80 != 0 {
			a.GetService().Addresses = append(a.GetService().Addresses, &workloadapi.NetworkAddress{Address: []byte{1, 2, 3}})
		}
		return fmt.Sprintf("ns/h%d", n), a
	}
	uid := fmt.Sprintf("w%d", b%6)
	services := map[string][]uint32{}
	for i := range 4 {
		if b&(1<<(i+3)) != 0 {
			services[fmt.Sprintf("ns/h%d", i)] = []uint32{uint32(80 + i%2), uint32(9000 + int(b%3))}
		}
	}
	a := wl(uid, "n", "z", []string{fmt.Sprintf("127.1.0.%d", b%4+1)}, services)
	if b&0x04 != 0 {
		a.GetWorkload().Addresses = append(a.GetWorkload().Addresses, []byte{9})
	}
	return uid, a
}

// FuzzIndex applies any sequence of upserts and removals and checks that the
// Index never panics, that every service whose translation changed was
// reported dirty, and that the result equals a fresh Index given the final
// state at once.
func FuzzIndex(f *testing.F) {
	f.Add([]byte{0, 1, 1, 0x18, 2, 1, 1, 0x18})
	f.Add([]byte{0, 0, 0, 3, 1, 0xff, 3, 0, 1, 0x08, 5, 0xff})
	f.Add([]byte{0, 0x80, 1, 0x0c, 4, 0x11})
	f.Fuzz(func(t *testing.T, ops []byte) {
		x := NewIndex()
		state := map[string]*workloadapi.Address{}
		for i := 0; i+1 < len(ops); i += 2 {
			before := translations(x)
			var dirty []keyspace.Service
			if ops[i]%4 == 3 { // removal
				name, _ := fuzzAddress(ops[i+1]>>7, ops[i+1])
				delete(state, name)
				dirty = x.Apply(AddressType, nil, []string{name})
			} else {
				name, a := fuzzAddress(ops[i], ops[i+1])
				state[name] = a
				dirty = x.Apply(AddressType, map[string]proto.Message{name: a}, nil)
			}
			after := translations(x)
			for k, h := range after {
				if before[k] != h && !slices.Contains(dirty, k) {
					t.Fatalf("op %d: service %s changed but is not dirty %v", i/2, k, dirty)
				}
			}
			for k := range before {
				if _, ok := after[k]; !ok && !slices.Contains(dirty, k) {
					t.Fatalf("op %d: service %s removed but is not dirty %v", i/2, k, dirty)
				}
			}
		}
		fresh := NewIndex()
		all := map[string]proto.Message{}
		for name, a := range state {
			all[name] = a
		}
		fresh.Apply(AddressType, all, nil)
		got, want := translations(x), translations(fresh)
		if len(got) != len(want) {
			t.Fatalf("incremental has %d services, fresh %d", len(got), len(want))
		}
		for k, h := range want {
			if got[k] != h {
				t.Fatalf("service %s differs from a fresh translation", k)
			}
		}
	})
}

// translations returns the content hash of every service of x.
func translations(x *Index) map[keyspace.Service]string {
	out := map[keyspace.Service]string{}
	for _, k := range x.Services() {
		s, ok := x.Service(k)
		if !ok {
			panic(fmt.Sprintf("listed service %s does not translate", k))
		}
		if len(s.Slices) > 0 && len(s.Slices[0].GetEndpoints()) > model.MaxSliceEndpoints {
			panic("slice over the limit")
		}
		out[k] = s.Hash()
	}
	return out
}
