package workload

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
)

// AddressType is the type URL of the resources an Index translates.
const AddressType = "type.googleapis.com/istio.workload.Address"

// Index holds the Services and Workloads last applied and which workloads
// belong to which service, so that a change re-translates only the services
// it touches.
//
// An Index is not safe for concurrent use with Apply; Service and Services
// only read, and may run concurrently with each other. Messages handed to
// Apply are kept and must not be modified afterwards.
type Index struct {
	// addresses are the resources by Address resource name.
	addresses map[string]*indexed
	// services are the Service resources by reference
	// ("<namespace>/<hostname>"); several resources may claim one reference
	// transiently, the smallest resource name wins.
	services map[string]map[string]*workloadapi.Service
	// members are the workloads (by resource name) listing a reference.
	members map[string]map[string]*workloadapi.Workload
	// byKey counts, per service key and reference, the Service resources
	// of that reference carrying that key.
	byKey map[keyspace.Service]map[string]int
}

// indexed is one Address resource as last applied: exactly one of svc and
// wl is set.
type indexed struct {
	svc *workloadapi.Service
	wl  *workloadapi.Workload
}

// NewIndex returns an empty Index.
func NewIndex() *Index {
	return &Index{
		addresses: map[string]*indexed{},
		services:  map[string]map[string]*workloadapi.Service{},
		members:   map[string]map[string]*workloadapi.Workload{},
		byKey:     map[keyspace.Service]map[string]int{},
	}
}

// Apply applies upserted (*workloadapi.Address by resource name) and removed
// resources of typeURL and returns, sorted, the services whose translation
// may have changed: Service tells whether each still exists and what it is
// now. Only AddressType changes anything; other types (Authorization) return
// nil. Removals are applied before upserts; a message of another type, or an
// Address holding neither a Service nor a Workload, is treated as a removal of
// its name.
func (x *Index) Apply(typeURL string, upserted map[string]proto.Message, removed []string) []keyspace.Service {
	if typeURL != AddressType {
		return nil
	}
	dirty := map[keyspace.Service]struct{}{}
	for _, name := range removed {
		x.put(name, nil, dirty)
	}
	for name, m := range upserted {
		a, _ := m.(*workloadapi.Address)
		x.put(name, a, dirty)
	}
	out := slices.Collect(maps.Keys(dirty))
	slices.SortFunc(out, compareKeys)
	return out
}

// put replaces the resource name with a (nil: removes it), marking the
// services it touched before and after.
func (x *Index) put(name string, a *workloadapi.Address, dirty map[keyspace.Service]struct{}) {
	if old := x.addresses[name]; old != nil {
		switch {
		case old.svc != nil:
			x.unlinkService(name, old.svc, dirty)
		case old.wl != nil:
			x.unlinkWorkload(name, old.wl, dirty)
		}
		delete(x.addresses, name)
	}
	switch {
	case a.GetService() != nil:
		svc := a.GetService()
		x.addresses[name] = &indexed{svc: svc}
		ref := reference(svc.GetNamespace(), svc.GetHostname())
		addTo(x.services, ref, name, svc)
		k := serviceKey(svc)
		addTo(x.byKey, k, ref, x.byKey[k][ref]+1)
		x.dirtyClaims(ref, dirty)
	case a.GetWorkload() != nil:
		wl := a.GetWorkload()
		x.addresses[name] = &indexed{wl: wl}
		for ref := range wl.GetServices() {
			addTo(x.members, ref, name, wl)
			x.dirtyRef(ref, dirty)
		}
	}
}

func (x *Index) unlinkService(name string, svc *workloadapi.Service, dirty map[keyspace.Service]struct{}) {
	ref := reference(svc.GetNamespace(), svc.GetHostname())
	x.dirtyClaims(ref, dirty)
	removeFrom(x.services, ref, name)
	k := serviceKey(svc)
	if n := x.byKey[k][ref]; n > 1 {
		x.byKey[k][ref] = n - 1
	} else {
		removeFrom(x.byKey, k, ref)
	}
}

// dirtyClaims marks the keys of every Service resource of a reference: which
// of them wins may change.
func (x *Index) dirtyClaims(ref string, dirty map[keyspace.Service]struct{}) {
	for _, svc := range x.services[ref] {
		dirty[serviceKey(svc)] = struct{}{}
	}
}

func (x *Index) unlinkWorkload(name string, wl *workloadapi.Workload, dirty map[keyspace.Service]struct{}) {
	for ref := range wl.GetServices() {
		removeFrom(x.members, ref, name)
		x.dirtyRef(ref, dirty)
	}
}

// dirtyRef marks the service a reference names, if one does.
func (x *Index) dirtyRef(ref string, dirty map[keyspace.Service]struct{}) {
	if svc := x.service(ref); svc != nil {
		dirty[serviceKey(svc)] = struct{}{}
	}
}

// service returns the Service resource a reference names: the one of the
// smallest resource name, or nil.
func (x *Index) service(ref string) *workloadapi.Service {
	claims := x.services[ref]
	if len(claims) == 0 {
		return nil
	}
	return claims[slices.Min(slices.Collect(maps.Keys(claims)))]
}

// owner returns the reference whose winning Service resource carries key
// k: the smallest hostname among them.
func (x *Index) owner(k keyspace.Service) (string, *workloadapi.Service) {
	best := ""
	var bestSvc *workloadapi.Service
	for ref := range x.byKey[k] {
		svc := x.service(ref)
		if svc == nil || serviceKey(svc) != k {
			continue
		}
		if bestSvc == nil || cmp.Or(cmp.Compare(hostOf(ref), hostOf(best)), cmp.Compare(ref, best)) < 0 {
			best, bestSvc = ref, svc
		}
	}
	return best, bestSvc
}

// Service returns the current translation of service k, or ok == false when
// no Service resource names it.
func (x *Index) Service(k keyspace.Service) (svc *model.Service, ok bool) {
	ref, s := x.owner(k)
	if s == nil {
		return nil, false
	}
	return translateService(k, s, x.members[ref]), true
}

// Services returns every service that exists now, sorted.
func (x *Index) Services() []keyspace.Service {
	out := make([]keyspace.Service, 0, len(x.byKey))
	for k := range x.byKey {
		if _, s := x.owner(k); s != nil {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, compareKeys)
	return out
}

// Len returns how many Services and Workloads the Index holds.
func (x *Index) Len() (services, workloads int) {
	for _, a := range x.addresses {
		if a.svc != nil {
			services++
		} else {
			workloads++
		}
	}
	return services, workloads
}

// reference is how a Workload's services map names a service.
func reference(namespace, hostname string) string { return namespace + "/" + hostname }

func hostOf(ref string) string {
	_, host, _ := strings.Cut(ref, "/")
	return host
}

func serviceKey(svc *workloadapi.Service) keyspace.Service {
	return keyspace.Service{Namespace: svc.GetNamespace(), Name: svc.GetName()}
}

func compareKeys(a, b keyspace.Service) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

func addTo[K, I comparable, V any](m map[K]map[I]V, outer K, inner I, v V) {
	in := m[outer]
	if in == nil {
		in = map[I]V{}
		m[outer] = in
	}
	in[inner] = v
}

func removeFrom[K, I comparable, V any](m map[K]map[I]V, outer K, inner I) {
	if in := m[outer]; in != nil {
		delete(in, inner)
		if len(in) == 0 {
			delete(m, outer)
		}
	}
}

// RoutesPending is always 0: the workload API has no routes; a Service
// carries its VIPs itself.
func (x *Index) RoutesPending() int { return 0 }

// Unknown is always false: a Service and the Workloads that back it arrive
// as resources of one type (Address), so once that type is complete a
// service without workloads really has no endpoints.
func (x *Index) Unknown(keyspace.Service) bool { return false }
