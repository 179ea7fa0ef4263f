package etcdsink

import (
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// specValue encodes spec as stored: its content (model.SpecContent, which
// shares spec's lists instead of deep-copying them), the slice generation
// gen its slices are stored under, and the bookkeeping fields.
// TestValueCopiesEveryField fails when the schema gains a field.
func specValue(spec *v1.ServiceSpec, gen uint32, hash string, revision uint64, observed int64) ([]byte, error) {
	v := model.SpecContent(spec)
	v.SliceGeneration, v.Revision, v.ContentHash, v.ObservedUnixNano = gen, revision, hash, observed
	return model.Marshal(v)
}

// sliceValue encodes a slice as stored; see specValue.
func sliceValue(sl *v1.EndpointSlice, hash string, revision uint64, observed int64) ([]byte, error) {
	v := model.SliceContent(sl)
	v.Revision, v.ContentHash, v.ObservedUnixNano = revision, hash, observed
	return model.Marshal(v)
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
