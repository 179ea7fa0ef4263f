package inspect

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// Service is one service as stored in etcd.
type Service struct {
	Spec   *v1.ServiceSpec
	Slices []*v1.EndpointSlice
}

// MarshalJSON renders the service as {"spec": ..., "endpointSlices": [...]}
// with protojson field names.
func (s Service) MarshalJSON() ([]byte, error) {
	out := struct {
		Spec   json.RawMessage   `json:"spec"`
		Slices []json.RawMessage `json:"endpointSlices"`
	}{Slices: []json.RawMessage{}}
	b, err := protojson.Marshal(s.Spec)
	if err != nil {
		return nil, err
	}
	out.Spec = b
	for _, sl := range s.Slices {
		b, err := protojson.Marshal(sl)
		if err != nil {
			return nil, err
		}
		out.Slices = append(out.Slices, b)
	}
	return json.Marshal(out)
}

// ReadService reads one service's keys with a single prefix Get.
func ReadService(ctx context.Context, kv clientv3.KV, space keyspace.Space, svc keyspace.Service) (Service, error) {
	resp, err := kv.Get(ctx, space.ServicePrefix(svc), clientv3.WithPrefix())
	if err != nil {
		return Service{}, fmt.Errorf("get %s: %w", space.ServicePrefix(svc), err)
	}
	all, err := assemble(space, resp.Kvs)
	if err != nil {
		return Service{}, err
	}
	s, ok := all[svc]
	if !ok {
		return Service{}, fmt.Errorf("service %s: not found under %s", svc, space.ServicesPrefix())
	}
	return s, nil
}

// ReadAll reads every service of the cluster, paging through the range.
func ReadAll(ctx context.Context, kv clientv3.KV, space keyspace.Space) ([]Service, error) {
	const page = 1000
	key, end := space.ServicesPrefix(), clientv3.GetPrefixRangeEnd(space.ServicesPrefix())
	var kvs []*kvPair
	for {
		resp, err := kv.Get(ctx, key, clientv3.WithRange(end), clientv3.WithLimit(page))
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", key, err)
		}
		for _, e := range resp.Kvs {
			kvs = append(kvs, &kvPair{string(e.Key), e.Value})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	all, err := assemblePairs(space, kvs)
	if err != nil {
		return nil, err
	}
	out := make([]Service, 0, len(all))
	for _, s := range all {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Spec, out[j].Spec
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
	return out, nil
}

type kvPair struct {
	key   string
	value []byte
}

func assemble(space keyspace.Space, kvs []*mvccpb.KeyValue) (map[keyspace.Service]Service, error) {
	pairs := make([]*kvPair, len(kvs))
	for i, e := range kvs {
		pairs[i] = &kvPair{string(e.Key), e.Value}
	}
	return assemblePairs(space, pairs)
}

func assemblePairs(space keyspace.Space, kvs []*kvPair) (map[keyspace.Service]Service, error) {
	out := map[keyspace.Service]Service{}
	gens := map[*v1.EndpointSlice]uint32{} // slice generation of each slice's key
	for _, e := range kvs {
		k, ok := space.ParseServiceKey(e.key)
		if !ok {
			continue
		}
		s := out[k.Service]
		switch k.Kind {
		case keyspace.KindSpec:
			spec, err := model.DecodeSpec(e.value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.key, err)
			}
			s.Spec = spec
		case keyspace.KindSlice:
			sl, err := model.DecodeSlice(e.value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.key, err)
			}
			s.Slices = append(s.Slices, sl)
			gens[sl] = k.Gen
		}
		out[k.Service] = s
	}
	for k, s := range out {
		if s.Spec == nil {
			delete(out, k) // slices without a spec: a half-deleted service is not shown
			continue
		}
		// Only the slices of the spec's generation belong to it; others
		// are being written or deleted (docs/contract.md).
		s.Slices = slices.DeleteFunc(s.Slices, func(sl *v1.EndpointSlice) bool { return gens[sl] != s.Spec.GetSliceGeneration() })
		sort.Slice(s.Slices, func(i, j int) bool { return s.Slices[i].GetSlice() < s.Slices[j].GetSlice() })
		out[k] = s
	}
	return out, nil
}
