package etcdsource

import (
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// held is what a watch knows of one service's keys, decoded.
type held struct {
	rev    int64 // etcd revision the keys reflect
	spec   *v1.ServiceSpec
	slices map[sliceID]*v1.EndpointSlice
}

// sliceID names one slice key: its slice generation and index. Only the
// spec's generation is assembled (docs/contract.md, "Services of any size").
type sliceID struct {
	gen uint32
	i   int
}

// completeness says whether held keys make a service.
type completeness int

const (
	absent     completeness = iota // no spec
	incomplete                     // spec present, a slice it counts is missing
	complete
)

// reset replaces everything held by kvs, listed at rev.
func (h *held) reset(space keyspace.Space, kvs []*mvccpb.KeyValue, rev int64) error {
	h.spec, h.slices, h.rev = nil, map[sliceID]*v1.EndpointSlice{}, rev
	var errs []error
	for _, kv := range kvs {
		if err := h.put(space, kv); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// apply applies one watch event.
func (h *held) apply(space keyspace.Space, ev *clientv3.Event) error {
	if ev.Type == mvccpb.DELETE {
		k, ok := space.ParseServiceKey(string(ev.Kv.Key))
		if !ok {
			return nil
		}
		switch k.Kind {
		case keyspace.KindSpec:
			h.spec = nil
		case keyspace.KindSlice:
			delete(h.slices, sliceID{k.Gen, k.Slice})
		}
		return nil
	}
	return h.put(space, ev.Kv)
}

// put stores one key. A value that does not decode is dropped (the key
// counts as missing, so the service is held), and reported.
func (h *held) put(space keyspace.Space, kv *mvccpb.KeyValue) error {
	k, ok := space.ParseServiceKey(string(kv.Key))
	if !ok {
		return nil
	}
	switch k.Kind {
	case keyspace.KindSpec:
		spec, err := model.DecodeSpec(kv.Value)
		if err != nil {
			h.spec = nil
			return fmt.Errorf("%s: %w", kv.Key, err)
		}
		if spec.ContentHash == "" {
			spec.ContentHash = model.SpecHash(spec)
		}
		h.spec = spec
	case keyspace.KindSlice:
		sl, err := model.DecodeSlice(kv.Value)
		if err != nil {
			delete(h.slices, sliceID{k.Gen, k.Slice})
			return fmt.Errorf("%s: %w", kv.Key, err)
		}
		if sl.ContentHash == "" {
			sl.ContentHash = model.SliceHash(sl)
		}
		h.slices[sliceID{k.Gen, k.Slice}] = sl
	}
	return nil
}

// assemble returns the service when it is complete. For an incomplete
// service it also returns the first missing slice.
func (h *held) assemble(svc keyspace.Service) (*model.Service, completeness, int) {
	if h.spec == nil {
		return nil, absent, 0
	}
	n := int(h.spec.EndpointSlices)
	out := &model.Service{Key: svc, Spec: h.spec, Slices: make([]*v1.EndpointSlice, n)}
	for i := range n {
		sl, ok := h.slices[sliceID{h.spec.SliceGeneration, i}]
		if !ok {
			return nil, incomplete, i
		}
		out.Slices[i] = sl
	}
	return out, complete, 0
}
