package translate

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
)

// Index holds the upstream state and the reverse indexes (cluster →
// service, EDS name → clusters, hostname → services, hostname → listeners
// and route configurations claiming VIPs for it) that let a change to a few
// resources re-translate only the services it affects.
//
// An Index is not safe for concurrent use with Apply; Service and Services
// only read, and may run concurrently with each other. Messages handed to
// Apply are kept and must not be modified afterwards.
type Index struct {
	clusters    map[string]*indexedCluster
	assignments map[string]*endpointv3.ClusterLoadAssignment
	listeners   map[string]*indexedClaims
	routes      map[string]*indexedClaims

	byKey  map[keyspace.Service]map[string]*serviceCluster // service → its clusters by name
	byEDS  map[string]map[string]*serviceCluster           // EDS service name → clusters reading it
	byHost map[string]map[keyspace.Service]int             // hostname → services with a cluster of it (count)
	// claimants lists, per hostname, the listeners and route configurations
	// that claim VIPs for it.
	claimants map[string]map[claimant]struct{}
	// routeRefs counts, per RDS route name, the listeners reading it.
	routeRefs map[string]int
}

// indexedCluster is a cluster as last applied; svc is nil when it is not a
// service port.
type indexedCluster struct {
	raw *clusterv3.Cluster
	svc *serviceCluster
}

// indexedClaims is a listener or route configuration as last applied, and
// the VIPs it claims.
type indexedClaims struct {
	raw    proto.Message
	claims claims
	routes []string // RDS route names a listener reads
}

// claimant names a listener or a route configuration.
type claimant struct {
	route bool
	name  string
}

// NewIndex returns an empty Index.
func NewIndex() *Index {
	return &Index{
		clusters:    make(map[string]*indexedCluster),
		assignments: make(map[string]*endpointv3.ClusterLoadAssignment),
		listeners:   make(map[string]*indexedClaims),
		routes:      make(map[string]*indexedClaims),
		byKey:       make(map[keyspace.Service]map[string]*serviceCluster),
		byEDS:       make(map[string]map[string]*serviceCluster),
		byHost:      make(map[string]map[keyspace.Service]int),
		claimants:   make(map[string]map[claimant]struct{}),
		routeRefs:   make(map[string]int),
	}
}

// Apply applies changed (upserted, keyed by resource name) and removed
// resources of one type and returns the services whose translation may have
// changed, sorted: Service tells whether each still exists and what it is
// now. typeURL is one of go-control-plane's resource/v3 ClusterType,
// EndpointType (keyed by EDS service name), ListenerType or RouteType;
// other types change nothing. The messages must be of the matching type
// (the xDS client decoded them so); one of another type is skipped.
// Removals are applied before upserts. A resource equal to the one held
// changes nothing, so a full-state push costs only the services that really
// changed.
func (x *Index) Apply(typeURL string, upserted map[string]proto.Message, removed []string) []keyspace.Service {
	dirty := make(map[keyspace.Service]struct{})
	switch typeURL {
	case resourcev3.ClusterType:
		for _, name := range removed {
			x.putCluster(name, nil, dirty)
		}
		for name, m := range upserted {
			if c, ok := m.(*clusterv3.Cluster); ok {
				x.putCluster(name, c, dirty)
			}
		}
	case resourcev3.EndpointType:
		for _, name := range removed {
			x.putAssignment(name, nil, dirty)
		}
		for name, m := range upserted {
			if cla, ok := m.(*endpointv3.ClusterLoadAssignment); ok {
				x.putAssignment(name, cla, dirty)
			}
		}
	case resourcev3.ListenerType:
		for _, name := range removed {
			x.putClaims(claimant{name: name}, nil, dirty)
		}
		for name, m := range upserted {
			if l, ok := m.(*listenerv3.Listener); ok {
				x.putClaims(claimant{name: name}, l, dirty)
			}
		}
	case resourcev3.RouteType:
		for _, name := range removed {
			x.putClaims(claimant{route: true, name: name}, nil, dirty)
		}
		for name, m := range upserted {
			if rc, ok := m.(*routev3.RouteConfiguration); ok {
				x.putClaims(claimant{route: true, name: name}, rc, dirty)
			}
		}
	}
	keys := make([]keyspace.Service, 0, len(dirty))
	for k := range dirty {
		keys = append(keys, k)
	}
	sortKeys(keys)
	return keys
}

// putCluster stores c under name, or removes name when c is nil.
func (x *Index) putCluster(name string, c *clusterv3.Cluster, dirty map[keyspace.Service]struct{}) {
	old, had := x.clusters[name]
	if had && c != nil && proto.Equal(old.raw, c) {
		return
	}
	if had {
		x.unlinkCluster(old.svc, dirty)
		delete(x.clusters, name)
	}
	if c == nil {
		return
	}
	sc, _ := classifyCluster(name, c)
	x.clusters[name] = &indexedCluster{raw: c, svc: sc}
	x.linkCluster(sc, dirty)
}

func (x *Index) linkCluster(sc *serviceCluster, dirty map[keyspace.Service]struct{}) {
	if sc == nil {
		return
	}
	dirty[sc.key] = struct{}{}
	addTo(x.byKey, sc.key, sc.name, sc)
	if sc.edsName != "" {
		addTo(x.byEDS, sc.edsName, sc.name, sc)
	}
	if x.byHost[sc.host] == nil {
		x.byHost[sc.host] = make(map[keyspace.Service]int)
	}
	x.byHost[sc.host][sc.key]++
}

func (x *Index) unlinkCluster(sc *serviceCluster, dirty map[keyspace.Service]struct{}) {
	if sc == nil {
		return
	}
	dirty[sc.key] = struct{}{}
	removeFrom(x.byKey, sc.key, sc.name)
	if sc.edsName != "" {
		removeFrom(x.byEDS, sc.edsName, sc.name)
	}
	if x.byHost[sc.host][sc.key]--; x.byHost[sc.host][sc.key] == 0 {
		removeFrom(x.byHost, sc.host, sc.key)
	}
}

// putAssignment stores cla under an EDS service name, or removes it when
// cla is nil.
func (x *Index) putAssignment(name string, cla *endpointv3.ClusterLoadAssignment, dirty map[keyspace.Service]struct{}) {
	old, had := x.assignments[name]
	switch {
	case cla == nil && !had:
		return
	case cla == nil:
		delete(x.assignments, name)
	case had && proto.Equal(old, cla):
		return
	default:
		x.assignments[name] = cla
	}
	for _, sc := range x.byEDS[name] {
		dirty[sc.key] = struct{}{}
	}
}

// putClaims stores a listener or route configuration, or removes it when m
// is nil, and dirties the services of every hostname whose claims changed.
func (x *Index) putClaims(who claimant, m proto.Message, dirty map[keyspace.Service]struct{}) {
	held := x.listeners
	if who.route {
		held = x.routes
	}
	old := held[who.name]
	if old != nil && m != nil && proto.Equal(old.raw, m) {
		return
	}
	var now *indexedClaims
	if m != nil {
		now = &indexedClaims{raw: m}
		if who.route {
			now.claims, _ = routeClaims(who.name, m.(*routev3.RouteConfiguration))
		} else {
			now.claims, _ = listenerClaims(who.name, m.(*listenerv3.Listener))
			now.routes = listenerRoutes(m.(*listenerv3.Listener))
		}
		held[who.name] = now
	} else {
		delete(held, who.name)
	}
	if !who.route {
		x.refRoutes(old, now)
	}
	var before, after claims
	if old != nil {
		before = old.claims
	}
	if now != nil {
		after = now.claims
	}
	for host, vips := range before {
		if _, still := after[host]; !still {
			removeFrom(x.claimants, host, who)
			x.dirtyHost(host, dirty)
		} else if !slices.Equal(vips, after[host]) {
			x.dirtyHost(host, dirty)
		}
	}
	for host := range after {
		if _, was := before[host]; !was {
			addTo(x.claimants, host, who, struct{}{})
			x.dirtyHost(host, dirty)
		}
	}
}

func (x *Index) dirtyHost(host string, dirty map[keyspace.Service]struct{}) {
	for k := range x.byHost[host] {
		dirty[k] = struct{}{}
	}
}

// Service translates service k from the current state; ok is false when k
// no longer exists (no default cluster names it).
func (x *Index) Service(k keyspace.Service) (svc *model.Service, ok bool) {
	byName := x.byKey[k]
	if len(byName) == 0 {
		return nil, false
	}
	clusters := make([]*serviceCluster, 0, len(byName))
	for _, sc := range byName {
		clusters = append(clusters, sc)
	}
	svc, _ = translateService(k, clusters, x)
	return svc, true
}

// Unknown reports whether service k reads an EDS assignment the Index has
// not received: its endpoints are unknown, not empty (docs/contract.md,
// "Unknown is not empty"). A received assignment with no endpoints is known.
func (x *Index) Unknown(k keyspace.Service) bool {
	for _, sc := range x.byKey[k] {
		if sc.edsName != "" && x.assignments[sc.edsName] == nil {
			return true
		}
	}
	return false
}

// Services returns every service that currently exists, sorted by
// namespace then name.
func (x *Index) Services() []keyspace.Service {
	keys := make([]keyspace.Service, 0, len(x.byKey))
	for k := range x.byKey {
		keys = append(keys, k)
	}
	sortKeys(keys)
	return keys
}

func (x *Index) assignment(name string) *endpointv3.ClusterLoadAssignment {
	return x.assignments[name]
}

func (x *Index) appendVIPs(dst []netip.Addr, host string) []netip.Addr {
	for who := range x.claimants[host] {
		held := x.listeners
		if who.route {
			held = x.routes
		}
		dst = append(dst, held[who.name].claims[host]...)
	}
	return dst
}

// addTo sets m[outer][inner] = v, creating the inner map.
func addTo[K, I comparable, V any](m map[K]map[I]V, outer K, inner I, v V) {
	if m[outer] == nil {
		m[outer] = make(map[I]V)
	}
	m[outer][inner] = v
}

// removeFrom deletes m[outer][inner], and m[outer] once empty.
func removeFrom[K, I comparable, V any](m map[K]map[I]V, outer K, inner I) {
	delete(m[outer], inner)
	if len(m[outer]) == 0 {
		delete(m, outer)
	}
}

func sortKeys(keys []keyspace.Service) {
	slices.SortFunc(keys, func(a, b keyspace.Service) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
}
