package etcdsource

import (
	"errors"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// held is what a watch knows of one service's keys, decoded and
// validated (validate.go). Its memory is bounded by the keys read.
type held struct {
	rev    int64 // etcd revision the keys reflect
	spec   *v1.ServiceSpec
	slices map[sliceID]*v1.EndpointSlice
	lim    limits
	// bad are the keys whose value is invalid (specKey for the spec), with
	// the value's mod revision; prev is bad before a reset, so that a
	// re-list does not report the same value again.
	bad, prev map[sliceID]int64
}

// sliceID names one slice key: its slice generation and index. Only the
// spec's generation is assembled (docs/contract.md, "Services of any size").
type sliceID struct {
	gen uint32
	i   int
}

// specKey is the spec's key in held.bad.
var specKey = sliceID{i: -1}

// completeness says whether held keys make a service.
type completeness int

const (
	absent     completeness = iota // no spec
	incomplete                     // spec present, a slice it counts is missing
	complete
	invalid // the spec, or a slice it counts, is invalid: hold the last good state
)

// reset replaces everything held by kvs, listed at rev.
func (h *held) reset(space keyspace.Space, kvs []*mvccpb.KeyValue, rev int64) error {
	h.spec, h.slices, h.rev = nil, map[sliceID]*v1.EndpointSlice{}, rev
	h.prev, h.bad = h.bad, map[sliceID]int64{}
	defer func() { h.prev = nil }()
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
			delete(h.bad, specKey)
		case keyspace.KindSlice:
			delete(h.slices, sliceID{k.Gen, k.Slice})
			delete(h.bad, sliceID{k.Gen, k.Slice})
		}
		return nil
	}
	return h.put(space, ev.Kv)
}

// put stores one key. A value that does not decode or validate is
// dropped and marked bad (the service is held at its last good state), and
// reported as an *InvalidValueError the first time it is seen.
func (h *held) put(space keyspace.Space, kv *mvccpb.KeyValue) error {
	k, ok := space.ParseServiceKey(string(kv.Key))
	if !ok {
		return nil
	}
	switch k.Kind {
	case keyspace.KindSpec:
		spec, err := model.DecodeSpec(kv.Value)
		reason := ReasonDecode
		if err == nil {
			reason, err = h.lim.checkSpec(k.Service, spec)
		}
		if err != nil {
			h.spec = nil
			return h.refuse(kv, specKey, reason, err)
		}
		delete(h.bad, specKey)
		if spec.ContentHash == "" {
			spec.ContentHash = model.SpecHash(spec)
		}
		h.spec = spec
	case keyspace.KindSlice:
		sl, err := model.DecodeSlice(kv.Value)
		reason := ReasonDecode
		if err == nil {
			reason, err = checkSlice(k.Slice, sl)
		}
		if err != nil {
			delete(h.slices, sliceID{k.Gen, k.Slice})
			return h.refuse(kv, sliceID{k.Gen, k.Slice}, reason, err)
		}
		delete(h.bad, sliceID{k.Gen, k.Slice})
		if sl.ContentHash == "" {
			sl.ContentHash = model.SliceHash(sl)
		}
		h.slices[sliceID{k.Gen, k.Slice}] = sl
	}
	return nil
}

// refuse marks the key i bad. It returns the error to report, or nil when
// this value (same mod revision) was reported already.
func (h *held) refuse(kv *mvccpb.KeyValue, i sliceID, reason string, err error) error {
	if h.bad == nil {
		h.bad = map[sliceID]int64{}
	}
	seen := h.bad[i] == kv.ModRevision || h.prev[i] == kv.ModRevision
	h.bad[i] = kv.ModRevision
	if seen && kv.ModRevision != 0 {
		return nil
	}
	return &InvalidValueError{Key: string(kv.Key), Reason: reason, Err: err}
}

// absent says whether no spec key is held: none was read, or it was deleted
// (an invalid spec is a spec).
func (h *held) absent() bool {
	_, bad := h.bad[specKey]
	return h.spec == nil && !bad
}

// assemble returns the service when it is complete. For an incomplete
// service it also returns the first missing slice. It allocates by the
// slices held, never by the count in the spec.
func (h *held) assemble(svc keyspace.Service) (*model.Service, completeness, int) {
	if _, bad := h.bad[specKey]; bad {
		return nil, invalid, 0
	}
	if h.spec == nil {
		return nil, absent, 0
	}
	n, gen := int(h.spec.EndpointSlices), h.spec.SliceGeneration
	for id := range h.bad {
		if id.gen == gen && id.i < n {
			return nil, invalid, id.i
		}
	}
	held := 0
	for id := range h.slices {
		if id.gen == gen {
			held++
		}
	}
	if n > held {
		for i := range held + 1 { // a missing one is among these
			if _, ok := h.slices[sliceID{gen, i}]; !ok {
				return nil, incomplete, i
			}
		}
	}
	out := &model.Service{Key: svc, Spec: h.spec, Slices: make([]*v1.EndpointSlice, n)}
	for i := range n {
		sl, ok := h.slices[sliceID{gen, i}]
		if !ok {
			return nil, incomplete, i
		}
		out.Slices[i] = sl
	}
	return out, complete, 0
}
