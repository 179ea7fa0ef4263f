package inspect

import (
	"bytes"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

var jsonOpts = protojson.MarshalOptions{Multiline: true, Indent: "  "}

// Decode decodes one etcd value. keyHint, when not empty, is the key the
// value was read from and decides between ServiceSpec and EndpointSlice;
// otherwise both are tried and the one that round-trips without unknown
// fields wins.
//
// etcdctl's --print-value-only appends a newline; Decode strips one trailing
// newline when the value does not decode with it.
func Decode(b []byte, keyHint string) (proto.Message, error) {
	if keyHint != "" {
		switch kindOfKey(keyHint) {
		case keyspace.KindSpec:
			return retryTrimmed(b, func(b []byte) (proto.Message, error) { return model.DecodeSpec(b) })
		case keyspace.KindSlice:
			return retryTrimmed(b, func(b []byte) (proto.Message, error) { return model.DecodeSlice(b) })
		default:
			return nil, fmt.Errorf("key %q: not a services/<ns>/<name>/spec or .../endpoints/<n> key", keyHint)
		}
	}
	for _, cand := range [][]byte{b, bytes.TrimSuffix(b, []byte("\n"))} {
		if m, ok := guess(cand); ok {
			return m, nil
		}
	}
	return nil, errors.New("value is neither a ServiceSpec nor an EndpointSlice (pass --key to say which)")
}

// kindOfKey parses the trailing part of a key of any cluster.
func kindOfKey(key string) keyspace.Kind {
	// Find the cluster by the fixed root so any cluster id works.
	rest, ok := bytes.CutPrefix([]byte(key), []byte(keyspace.Root))
	if !ok {
		return keyspace.KindUnknown
	}
	cluster, _, _ := bytes.Cut(rest, []byte("/"))
	k, ok := keyspace.New(string(cluster)).ParseServiceKey(key)
	if !ok {
		return keyspace.KindUnknown
	}
	return k.Kind
}

func retryTrimmed(b []byte, dec func([]byte) (proto.Message, error)) (proto.Message, error) {
	m, err := dec(b)
	if err == nil && !hasUnknown(m) {
		return m, nil
	}
	if t := bytes.TrimSuffix(b, []byte("\n")); len(t) != len(b) {
		if m2, err2 := dec(t); err2 == nil {
			return m2, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// guess tries both message types. Field numbers of the two schemas overlap,
// so a value is taken as a type only if it decodes with no unknown fields and
// carries that type's identifying content.
func guess(b []byte) (proto.Message, bool) {
	if sl, err := model.DecodeSlice(b); err == nil && !hasUnknown(sl) && len(sl.GetEndpoints()) > 0 {
		return sl, true
	}
	if spec, err := model.DecodeSpec(b); err == nil && !hasUnknown(spec) && spec.GetName() != "" {
		return spec, true
	}
	if sl, err := model.DecodeSlice(b); err == nil && !hasUnknown(sl) && sl.GetContentHash() != "" {
		return sl, true
	}
	return nil, false
}

func hasUnknown(m proto.Message) bool {
	found := false
	var walk func(m proto.Message)
	walk = func(m proto.Message) {
		r := m.ProtoReflect()
		if len(r.GetUnknown()) > 0 {
			found = true
			return
		}
		switch x := m.(type) {
		case *v1.ServiceSpec:
			for _, p := range x.GetPorts() {
				walk(p)
			}
		case *v1.EndpointSlice:
			for _, e := range x.GetEndpoints() {
				walk(e)
			}
		}
	}
	walk(m)
	return found
}

// JSON renders a value as indented protojson.
func JSON(m proto.Message) ([]byte, error) {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("render %T: %w", m, err)
	}
	return append(b, '\n'), nil
}
