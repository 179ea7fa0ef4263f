package etcdsource

import (
	"net/netip"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// FuzzAssemble feeds arbitrary values for a service's spec and two slice
// keys (listed, then changed by a watch event) to held, and assembles the
// service: it never panics, and what it returns is bounded by the values
// read, never by a count inside them.
func FuzzAssemble(f *testing.F) {
	svc := keyspace.Service{Namespace: "ns", Name: "a"}
	good := service(svc, 3, 0)
	specB, _ := model.Marshal(good.Spec)
	sliceB, _ := model.Marshal(good.Slices[0])
	huge, _ := model.Marshal(&v1.ServiceSpec{Namespace: "ns", Name: "a", EndpointSlices: 4294967295})
	many, _ := model.Marshal(&v1.ServiceSpec{Namespace: "ns", Name: "a", EndpointSlices: keyspace.MaxSlices})
	other, _ := model.Marshal(&v1.EndpointSlice{Slice: 9})
	f.Add(specB, sliceB, uint16(0), []byte{}, uint16(1), false)
	f.Add(huge, sliceB, uint16(0), other, uint16(1), true)
	f.Add(many, other, uint16(9), sliceB, uint16(0), false)
	f.Add([]byte{0xff, 0xff}, []byte("garbage"), uint16(65535), []byte{}, uint16(2), true)

	lim := limits{cidrs: []netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")}, maxFrontends: DefaultMaxFrontends}
	f.Fuzz(func(t *testing.T, spec, slice []byte, index uint16, later []byte, laterIndex uint16, deleteSpec bool) {
		h := held{lim: lim}
		kvs := []*mvccpb.KeyValue{
			{Key: []byte(space.Spec(svc)), Value: spec, ModRevision: 1},
			{Key: []byte(space.Slice(svc, int(index))), Value: slice, ModRevision: 1},
		}
		_ = h.reset(space, kvs, 1)
		check(t, &h, svc)
		ev := &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte(space.Slice(svc, int(laterIndex))), Value: later, ModRevision: 2}}
		if deleteSpec {
			ev = &mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(space.Spec(svc)), ModRevision: 2}}
		}
		_ = h.apply(space, ev)
		check(t, &h, svc)
	})
}

// check assembles h and checks what it returns against what h holds.
func check(t *testing.T, h *held, svc keyspace.Service) {
	t.Helper()
	out, c, _ := h.assemble(svc)
	if len(h.slices) > 2 || len(h.bad) > 3 {
		t.Fatalf("held %d slices and %d bad keys from at most 3 keys", len(h.slices), len(h.bad))
	}
	switch c {
	case complete:
		if out == nil || len(out.Slices) > len(h.slices) || int(out.Spec.GetEndpointSlices()) != len(out.Slices) {
			t.Fatalf("complete service with %d slices from %d held", len(out.Slices), len(h.slices))
		}
	default:
		if out != nil {
			t.Fatalf("completeness %d with a service", c)
		}
	}
}
