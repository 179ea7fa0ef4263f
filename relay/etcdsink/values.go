package etcdsink

import (
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// specValue encodes spec as stored: its content, the slice generation gen
// its slices are stored under, and the bookkeeping fields. It copies field by field instead of cloning, so a large spec is
// not deep-copied; TestValueCopiesEveryField fails when the schema gains a
// field this function does not copy.
func specValue(spec *v1.ServiceSpec, gen uint32, hash string, revision uint64, observed int64) ([]byte, error) {
	return model.Marshal(&v1.ServiceSpec{
		Namespace:        spec.GetNamespace(),
		Name:             spec.GetName(),
		Hostname:         spec.GetHostname(),
		Vips:             spec.GetVips(),
		Ports:            spec.GetPorts(),
		LoadBalancing:    spec.GetLoadBalancing(),
		EndpointSlices:   spec.GetEndpointSlices(),
		SliceGeneration:  gen,
		Revision:         revision,
		ContentHash:      hash,
		ObservedUnixNano: observed,
	})
}

// sliceValue encodes a slice as stored; see specValue.
func sliceValue(sl *v1.EndpointSlice, hash string, revision uint64, observed int64) ([]byte, error) {
	return model.Marshal(&v1.EndpointSlice{
		Endpoints:        sl.GetEndpoints(),
		Slice:            sl.GetSlice(),
		Revision:         revision,
		ContentHash:      hash,
		ObservedUnixNano: observed,
	})
}

func specHash(spec *v1.ServiceSpec) string {
	if h := spec.GetContentHash(); h != "" {
		return h
	}
	return model.SpecHash(spec)
}

func sliceHash(sl *v1.EndpointSlice) string {
	if h := sl.GetContentHash(); h != "" {
		return h
	}
	return model.SliceHash(sl)
}
