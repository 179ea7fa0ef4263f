package model

import (
	"testing"

	"google.golang.org/protobuf/proto"

	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// FuzzDecodeValue decodes any bytes as both value types (docs/contract.md
// section 3): decoding never panics, and a value that decodes re-encodes
// deterministically to bytes that decode to the same message.
func FuzzDecodeValue(f *testing.F) {
	s := NewService(&v1.ServiceSpec{Namespace: "ns", Name: "svc", Hostname: "svc.ns.svc.cluster.local", Vips: []string{"127.77.0.1"},
		Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP, Name: "http"}}},
		[]*v1.Endpoint{{Address: "127.0.0.1", Port: 8080, Weight: 1, TargetPorts: map[uint32]uint32{80: 8080}}})
	spec, _ := Marshal(s.Spec)
	slice, _ := Marshal(s.Slices[0])
	f.Add(spec)
	f.Add(slice)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}) // a length far beyond the value
	f.Fuzz(func(t *testing.T, b []byte) {
		if sp, err := DecodeSpec(b); err == nil {
			roundTrip(t, sp, func(b []byte) (proto.Message, error) { return DecodeSpec(b) })
			_ = SpecHash(sp)
		}
		if sl, err := DecodeSlice(b); err == nil {
			roundTrip(t, sl, func(b []byte) (proto.Message, error) { return DecodeSlice(b) })
			_ = SliceHash(sl)
		}
	})
}

func roundTrip(t *testing.T, m proto.Message, decode func([]byte) (proto.Message, error)) {
	t.Helper()
	b, err := Marshal(m)
	if err != nil {
		t.Fatalf("re-encode %T: %v", m, err)
	}
	again, err := decode(b)
	if err != nil {
		t.Fatalf("decode re-encoded %T: %v", m, err)
	}
	if !proto.Equal(m, again) {
		t.Fatalf("%T changed in a round trip", m)
	}
	b2, err := Marshal(again)
	if err != nil || string(b2) != string(b) {
		t.Fatalf("%T: encoding not deterministic", m)
	}
}
