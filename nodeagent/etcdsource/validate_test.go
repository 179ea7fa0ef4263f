package etcdsource

import (
	"net/netip"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

func marshalKV(t *testing.T, key string, v any, rev int64) *mvccpb.KeyValue {
	t.Helper()
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	case *v1.ServiceSpec:
		var err error
		if b, err = model.Marshal(v); err != nil {
			t.Fatal(err)
		}
	case *v1.EndpointSlice:
		var err error
		if b, err = model.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	return &mvccpb.KeyValue{Key: []byte(key), Value: b, ModRevision: rev}
}

func TestHeldRefusesInvalidValues(t *testing.T) {
	svc := keyspace.Service{Namespace: "ns", Name: "a"}
	good := service(svc, 3, 0)
	lim := limits{cidrs: []netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")}, maxFrontends: 4}
	spec := func(edit func(*v1.ServiceSpec)) *v1.ServiceSpec {
		s := &v1.ServiceSpec{Namespace: "ns", Name: "a", Vips: []string{"127.77.0.1"},
			Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080}}, EndpointSlices: 1}
		edit(s)
		return s
	}
	slice := func(edit func(*v1.EndpointSlice)) *v1.EndpointSlice {
		sl := &v1.EndpointSlice{Endpoints: []*v1.Endpoint{{Address: "127.0.0.1", Port: 8080}}}
		edit(sl)
		return sl
	}
	cases := []struct {
		name, reason string
		key          string
		value        any
	}{
		{"garbage spec", ReasonDecode, space.Spec(svc), []byte{0xff, 0xff, 0xff, 0x01}},
		{"garbage slice", ReasonDecode, space.Slice(svc, 0), []byte{0x0a, 0xff}},
		{"huge slice count", ReasonSliceCount, space.Spec(svc), spec(func(s *v1.ServiceSpec) { s.EndpointSlices = 4294967295 })},
		{"spec of another service", ReasonKeyMismatch, space.Spec(svc), spec(func(s *v1.ServiceSpec) { s.Name = "b" })},
		{"slice claiming another index", ReasonKeyMismatch, space.Slice(svc, 0), slice(func(s *v1.EndpointSlice) { s.Slice = 7 })},
		{"port 0", ReasonPort, space.Spec(svc), spec(func(s *v1.ServiceSpec) { s.Ports[0].Port = 0 })},
		{"port beyond 65535", ReasonPort, space.Spec(svc), spec(func(s *v1.ServiceSpec) { s.Ports[0].Port = 70000 })},
		{"bad vip", ReasonAddress, space.Spec(svc), spec(func(s *v1.ServiceSpec) { s.Vips = []string{"not-an-ip"} })},
		{"vip outside cidrs", ReasonVIPOutside, space.Spec(svc), spec(func(s *v1.ServiceSpec) { s.Vips = []string{"127.0.0.1"} })},
		{"too many frontends", ReasonFrontends, space.Spec(svc), spec(func(s *v1.ServiceSpec) {
			s.Vips = []string{"127.77.0.1", "127.77.0.2", "127.77.0.3"}
			s.Ports = append(s.Ports, &v1.ServicePort{Port: 81})
		})},
		{"bad endpoint address", ReasonAddress, space.Slice(svc, 0), slice(func(s *v1.EndpointSlice) { s.Endpoints[0].Address = "x" })},
		{"endpoint port", ReasonPort, space.Slice(svc, 0), slice(func(s *v1.EndpointSlice) { s.Endpoints[0].Port = 1 << 20 })},
		{"too many endpoints", ReasonSliceSize, space.Slice(svc, 0), slice(func(s *v1.EndpointSlice) {
			for range model.MaxSliceEndpoints {
				s.Endpoints = append(s.Endpoints, &v1.Endpoint{Address: "127.0.0.2"})
			}
		})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := held{lim: lim}
			var kvs []*mvccpb.KeyValue
			kvs = append(kvs, marshalKV(t, space.Spec(svc), good.Spec, 1))
			for i, sl := range good.Slices {
				kvs = append(kvs, marshalKV(t, space.Slice(svc, i), sl, 1))
			}
			if err := h.reset(space, kvs, 1); err != nil {
				t.Fatalf("good service refused: %v", err)
			}
			if _, c, _ := h.assemble(svc); c != complete {
				t.Fatalf("good service: completeness %d", c)
			}
			bad := marshalKV(t, tc.key, tc.value, 2)
			err := h.put(space, bad)
			iv, ok := err.(*InvalidValueError)
			if !ok || iv.Reason != tc.reason || iv.Key != tc.key {
				t.Fatalf("put = %v; want an InvalidValueError %s for %s", err, tc.reason, tc.key)
			}
			if _, c, _ := h.assemble(svc); c != invalid {
				t.Fatalf("completeness %d after an invalid value, want invalid", c)
			}
			if err := h.put(space, bad); err != nil {
				t.Fatalf("the same value reported twice: %v", err)
			}
			// A good value at the key makes the service whole again.
			for _, kv := range kvs {
				if string(kv.Key) == tc.key {
					kv.ModRevision = 3
					if err := h.put(space, kv); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, c, _ := h.assemble(svc); c != complete {
				t.Fatalf("completeness %d after the good value came back", c)
			}
		})
	}
}

func TestHeldAssembleAllocatesByHeldSlices(t *testing.T) {
	svc := keyspace.Service{Namespace: "ns", Name: "a"}
	h := held{}
	// A count within MaxSlices but far beyond the slices held: incomplete,
	// at the first missing slice, without allocating by the count.
	spec := &v1.ServiceSpec{Namespace: "ns", Name: "a", EndpointSlices: keyspace.MaxSlices}
	if err := h.reset(space, []*mvccpb.KeyValue{marshalKV(t, space.Spec(svc), spec, 1)}, 1); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(10, func() {
		if _, c, missing := h.assemble(svc); c != incomplete || missing != 0 {
			t.Fatalf("assemble = %d, missing %d", c, missing)
		}
	})
	if allocs > 0 {
		t.Fatalf("assemble of an incomplete service allocated %v times", allocs)
	}
}

func TestSourceHoldsServiceWithInvalidValues(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	a, b := keyspace.Service{Namespace: "ns", Name: "a"}, keyspace.Service{Namespace: "ns", Name: "b"}
	good := service(a, 3, 0)
	writeService(t, c, good, 1, 0)
	put(t, c, space.Spec(b), "\xff\xff garbage")

	src := runSource(t, c, Options{ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")}})
	rec := newRecorder(t, src)
	src.Watch(a)
	src.Watch(b)
	rec.waitFor(a, "a's good state", hasHash(good))
	rec.waitFor(b, "b reported invalid", func(ev Event) bool { return ev.Invalid && ev.State == nil })

	// a's spec turns hostile: a VIP outside the CIDRs, then a huge count.
	// Nothing is emitted for a (it keeps its last good state).
	hostile := service(a, 3, 0).Spec
	hostile.Vips = []string{"127.0.0.1"}
	b1, _ := model.Marshal(hostile)
	put(t, c, space.Spec(a), string(b1))
	hostile.Vips, hostile.EndpointSlices = []string{"127.77.0.1"}, 4294967295
	b2, _ := model.Marshal(hostile)
	put(t, c, space.Spec(a), string(b2))
	testenv.EventuallyTrue(t, "three invalid values counted", func() bool {
		st := src.Stats().Invalid
		return st[ReasonDecode] == 1 && st[ReasonVIPOutside] == 1 && st[ReasonSliceCount] == 1
	})
	rec.poll()
	if evs := rec.got[a]; len(evs) != 1 {
		t.Fatalf("a emitted %d events, want only its good state: %+v", len(evs), evs)
	}
	// A later good change flows again.
	next := service(a, 4, 1)
	writeService(t, c, next, 2, 3)
	rec.waitFor(a, "a's next good state", hasHash(next))
	if st := src.Stats().Invalid; st[ReasonDecode] != 1 || st[ReasonVIPOutside] != 1 || st[ReasonSliceCount] != 1 {
		t.Fatalf("invalid counts %v: each value once", st)
	}
}
