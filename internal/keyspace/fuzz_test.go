package keyspace

import (
	"strings"
	"testing"
)

// FuzzParseServiceKey checks that any key either parses to a bounded,
// canonical result that round-trips through Spec/Slice, or is rejected.
func FuzzParseServiceKey(f *testing.F) {
	s := New("fuzz")
	svc := Service{"ns", "name"}
	for _, seed := range []string{
		s.Spec(svc), s.Slice(svc, 0), s.Slice(svc, 12), s.Slice(svc, MaxSlices-1),
		s.ServicePrefix(svc) + "endpoints/010", s.ServicePrefix(svc) + "endpoints/100000000",
		s.ServicePrefix(svc) + "endpoints/-1", s.ServicesPrefix() + "ns//spec", s.VIP("127.77.0.1"),
		s.SliceOf(svc, 3, 7), s.ServicePrefix(svc) + "endpoints/0/3", s.ServicePrefix(svc) + "endpoints/03/1",
		s.ServicePrefix(svc) + "endpoints/2147483648/0", s.ServicePrefix(svc) + "endpoints/1/2/3",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		k, ok := s.ParseServiceKey(key)
		if !ok {
			if k != (ServiceKey{}) {
				t.Fatalf("rejected %q but returned %+v", key, k)
			}
			return
		}
		if k.Service.Namespace == "" || k.Service.Name == "" ||
			strings.Contains(k.Service.Namespace, "/") || strings.Contains(k.Service.Name, "/") {
			t.Fatalf("%q: bad service %+v", key, k.Service)
		}
		var back string
		switch k.Kind {
		case KindSpec:
			back = s.Spec(k.Service)
		case KindSlice:
			if k.Slice < 0 || k.Slice >= MaxSlices || k.Gen >= MaxSliceGeneration {
				t.Fatalf("%q: slice %d of generation %d out of bounds", key, k.Slice, k.Gen)
			}
			back = s.SliceOf(k.Service, k.Gen, k.Slice)
		default:
			t.Fatalf("%q: parsed with kind %d", key, k.Kind)
		}
		if back != key {
			t.Fatalf("%q parsed to %+v, which names %q", key, k, back)
		}
	})
}
