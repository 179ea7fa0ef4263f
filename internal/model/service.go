package model

import (
	"encoding/hex"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// MaxSliceEndpoints is the largest number of endpoints in one EndpointSlice.
const MaxSliceEndpoints = 1000

// Service is everything stored about one service: its spec and its endpoint
// slices, in slice order. Spec.EndpointSlices == len(Slices).
type Service struct {
	Key    keyspace.Service
	Spec   *v1.ServiceSpec
	Slices []*v1.EndpointSlice
}

// NewService builds a Service from a spec and its endpoints, which must
// already be in their final (sorted) order. It cuts the endpoints into slices
// of at most MaxSliceEndpoints and fills every value's content hash. Revision
// and observation time are left zero: the writer sets them.
func NewService(spec *v1.ServiceSpec, endpoints []*v1.Endpoint) *Service {
	s := &Service{Key: keyspace.Service{Namespace: spec.GetNamespace(), Name: spec.GetName()}, Spec: spec}
	for i := 0; i < len(endpoints); i += MaxSliceEndpoints {
		end := min(i+MaxSliceEndpoints, len(endpoints))
		s.Slices = append(s.Slices, &v1.EndpointSlice{Endpoints: endpoints[i:end], Slice: uint32(len(s.Slices))})
	}
	spec.EndpointSlices = uint32(len(s.Slices))
	spec.ContentHash = SpecHash(spec)
	for _, sl := range s.Slices {
		sl.ContentHash = SliceHash(sl)
	}
	return s
}

// Hash is the content hash of the whole service: it changes when any of its
// values' content changes.
func (s *Service) Hash() string {
	h := xxhash.New()
	h.WriteString(s.Spec.GetContentHash())
	for _, sl := range s.Slices {
		h.WriteString(sl.GetContentHash())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Endpoints returns every endpoint of the service in slice order.
func (s *Service) Endpoints() []*v1.Endpoint {
	var out []*v1.Endpoint
	for _, sl := range s.Slices {
		out = append(out, sl.GetEndpoints()...)
	}
	return out
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// SpecContent returns a new spec holding spec's content: everything but
// revision, content_hash and observed_unix_nano. It copies field by field
// instead of cloning, so a large spec is not deep-copied: the result shares
// spec's lists and must not be mutated beyond its top-level fields.
func SpecContent(spec *v1.ServiceSpec) *v1.ServiceSpec {
	return &v1.ServiceSpec{
		Namespace:      spec.GetNamespace(),
		Name:           spec.GetName(),
		Hostname:       spec.GetHostname(),
		Vips:           spec.GetVips(),
		Ports:          spec.GetPorts(),
		LoadBalancing:  spec.GetLoadBalancing(),
		EndpointSlices: spec.GetEndpointSlices(),
	}
}

// SliceContent returns a new slice holding sl's content; see SpecContent.
func SliceContent(sl *v1.EndpointSlice) *v1.EndpointSlice {
	return &v1.EndpointSlice{Endpoints: sl.GetEndpoints(), Slice: sl.GetSlice()}
}

// SpecHash is the content hash of spec (SpecContent). It does not modify
// spec.
func SpecHash(spec *v1.ServiceSpec) string { return hashMessage(SpecContent(spec)) }

// SliceHash is the content hash of a slice (SliceContent). It does not
// modify sl.
func SliceHash(sl *v1.EndpointSlice) string { return hashMessage(SliceContent(sl)) }

func hashMessage(m proto.Message) string {
	b, err := deterministic.Marshal(m)
	if err != nil {
		// Marshalling a well-formed generated message cannot fail.
		panic(fmt.Sprintf("model: marshal %T: %v", m, err))
	}
	var sum [8]byte
	h := xxhash.Sum64(b)
	for i := range sum {
		sum[i] = byte(h >> (56 - 8*i))
	}
	return hex.EncodeToString(sum[:])
}

// Marshal encodes a value for etcd (deterministic protobuf).
func Marshal(m proto.Message) ([]byte, error) {
	b, err := deterministic.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", m, err)
	}
	return b, nil
}

// DecodeSpec decodes a value stored at a spec key.
func DecodeSpec(b []byte) (*v1.ServiceSpec, error) {
	s := &v1.ServiceSpec{}
	if err := proto.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("decode ServiceSpec: %w", err)
	}
	return s, nil
}

// DecodeSlice decodes a value stored at an endpoints/<i> key.
func DecodeSlice(b []byte) (*v1.EndpointSlice, error) {
	s := &v1.EndpointSlice{}
	if err := proto.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("decode EndpointSlice: %w", err)
	}
	return s, nil
}
