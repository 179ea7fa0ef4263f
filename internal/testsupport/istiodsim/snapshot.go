package istiodsim

import (
	"fmt"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// snapshot is one version of everything the Sim serves. Streams read it
// without locks: it is immutable except for its cache of encoded bodies,
// which has its own mutex.
type snapshot struct {
	// instance identifies the simulated Istiod process; it changes on
	// Restart and prefixes versions and nonces.
	instance string
	version  string
	// services are the resources of service i at index i; nil for a deleted
	// service. The serviceResources are shared between snapshots.
	services []*serviceResources
	layout   *layout

	mu     sync.Mutex
	bodies map[bodyKey]*cachedBody
	wds    map[string]*discoveryv3.Resource // Address resources; see wdsState
}

// layout is what depends on the set of services rather than on their
// endpoints. It is rebuilt when services are added or deleted and shared by
// the snapshots in between.
type layout struct {
	// loads maps an EDS cluster name to its service and position in loads.
	loads map[string]loadRef
	// staticClusters come first in CDS; httpListener last in LDS.
	staticClusters []resource
	httpListener   resource
	// route is HTTPRoute.
	route resource
}

type loadRef struct{ service, index int }

// newLayout indexes services (nil entries are deleted services).
func newLayout(services []*serviceResources, static []resource, http resource) *layout {
	l := &layout{loads: map[string]loadRef{}, staticClusters: static, httpListener: http}
	var vhosts []*routev3.VirtualHost
	for i, r := range services {
		if r == nil {
			continue
		}
		for j, ld := range r.loads {
			l.loads[ld.name] = loadRef{i, j}
		}
		if r.vhost != nil {
			vhosts = append(vhosts, r.vhost)
		}
	}
	l.route = resource{name: HTTPRoute, any: mustAny(routeConfiguration(vhosts))}
	return l
}

// all returns every resource of a wildcard type, in a stable order.
func (sn *snapshot) all(t xdsType) []*anypb.Any {
	var out []*anypb.Any
	switch t {
	case cdsType:
		for _, r := range sn.layout.staticClusters {
			out = append(out, r.any)
		}
		for _, s := range sn.services {
			if s != nil {
				for _, r := range s.clusters {
					out = append(out, r.any)
				}
			}
		}
	case ldsType:
		for _, s := range sn.services {
			if s != nil {
				for _, r := range s.listeners {
					out = append(out, r.any)
				}
			}
		}
		out = append(out, sn.layout.httpListener.any)
	}
	return out
}

// lookup returns the named resource of a named type, or nil.
func (sn *snapshot) lookup(t xdsType, name string) *anypb.Any {
	switch t {
	case edsType:
		ref, ok := sn.layout.loads[name]
		if !ok {
			return nil
		}
		return sn.services[ref.service].loads[ref.index].any
	case rdsType:
		if name == sn.layout.route.name {
			return sn.layout.route.any
		}
	}
	return nil
}

// bodyKey identifies a response body within a snapshot: its type and the
// names of its resources (hash and count), or every resource of a wildcard
// type.
type bodyKey struct {
	t        xdsType
	wildcard bool
	names    uint64
	count    int
}

type cachedBody struct {
	once sync.Once
	body []byte
	err  error
}

// maxCachedBodies bounds the bodies cached per snapshot; streams whose
// subscriptions differ from everyone else's get uncached bodies beyond it.
const maxCachedBodies = 64

// body returns the encoded DiscoveryResponse (without nonce) for key,
// marshalling it from resources() the first time any stream asks.
func (sn *snapshot) body(key bodyKey, resources func() []*anypb.Any) ([]byte, error) {
	sn.mu.Lock()
	b := sn.bodies[key]
	if b == nil && len(sn.bodies) < maxCachedBodies {
		if sn.bodies == nil {
			sn.bodies = map[bodyKey]*cachedBody{}
		}
		b = &cachedBody{}
		sn.bodies[key] = b
	}
	sn.mu.Unlock()
	if b == nil {
		return encodeBody(sn.instance, sn.version, key.t.url(), resources())
	}
	b.once.Do(func() { b.body, b.err = encodeBody(sn.instance, sn.version, key.t.url(), resources()) })
	return b.body, b.err
}

// encodeBody marshals a DiscoveryResponse without its nonce.
func encodeBody(instance, version, typeURL string, resources []*anypb.Any) ([]byte, error) {
	b, err := proto.Marshal(&discoveryv3.DiscoveryResponse{
		VersionInfo:  version,
		Resources:    resources,
		TypeUrl:      typeURL,
		ControlPlane: &corev3.ControlPlane{Identifier: "istiodsim-" + instance},
	})
	if err != nil {
		return nil, fmt.Errorf("encode %s response %s: %w", typeURL, version, err)
	}
	return b, nil
}
