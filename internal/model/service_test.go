package model

import (
	"fmt"
	"testing"

	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

func endpoints(n int) []*v1.Endpoint {
	out := make([]*v1.Endpoint, n)
	for i := range out {
		out[i] = &v1.Endpoint{Address: fmt.Sprintf("127.0.%d.%d", i/250, i%250+1), Port: 8080, Weight: 1}
	}
	return out
}

func TestNewServiceSlicesAndHashes(t *testing.T) {
	spec := &v1.ServiceSpec{Namespace: "ns", Name: "a", Hostname: "a.ns.svc.cluster.local", Vips: []string{"127.77.0.1"}}
	s := NewService(spec, endpoints(2500))
	if len(s.Slices) != 3 || spec.EndpointSlices != 3 {
		t.Fatalf("slices = %d, spec says %d; want 3", len(s.Slices), spec.EndpointSlices)
	}
	if n := len(s.Slices[2].Endpoints); n != 500 {
		t.Fatalf("last slice has %d endpoints, want 500", n)
	}
	for i, sl := range s.Slices {
		if sl.Slice != uint32(i) || sl.ContentHash == "" {
			t.Fatalf("slice %d: index %d hash %q", i, sl.Slice, sl.ContentHash)
		}
	}
	if spec.ContentHash == "" || s.Key.String() != "ns/a" {
		t.Fatalf("spec hash %q key %v", spec.ContentHash, s.Key)
	}
}

func TestHashIgnoresBookkeeping(t *testing.T) {
	a := NewService(&v1.ServiceSpec{Namespace: "ns", Name: "a"}, endpoints(3))
	b := NewService(&v1.ServiceSpec{Namespace: "ns", Name: "a"}, endpoints(3))
	b.Spec.Revision, b.Spec.ObservedUnixNano = 9, 12345
	b.Slices[0].Revision = 4
	if SpecHash(a.Spec) != SpecHash(b.Spec) || SliceHash(a.Slices[0]) != SliceHash(b.Slices[0]) {
		t.Fatal("bookkeeping fields changed the content hash")
	}
	if a.Hash() != b.Hash() {
		t.Fatal("service hash differs")
	}
	c := NewService(&v1.ServiceSpec{Namespace: "ns", Name: "a"}, endpoints(4))
	if c.Hash() == a.Hash() || SliceHash(c.Slices[0]) == SliceHash(a.Slices[0]) {
		t.Fatal("an added endpoint did not change the hash")
	}
}

func TestRoundTrip(t *testing.T) {
	s := NewService(&v1.ServiceSpec{Namespace: "ns", Name: "a", Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP}}}, endpoints(2))
	b, err := Marshal(s.Spec)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := DecodeSpec(b)
	if err != nil || SpecHash(spec) != s.Spec.ContentHash {
		t.Fatalf("round trip: %v, hash %q vs %q", err, SpecHash(spec), s.Spec.ContentHash)
	}
	if _, err := DecodeSlice([]byte{0xff, 0xff}); err == nil {
		t.Fatal("garbage decoded")
	}
}
