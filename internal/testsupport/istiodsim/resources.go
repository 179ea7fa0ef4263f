package istiodsim

import (
	"fmt"
	"runtime"
	"sync"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs of the State-of-the-World resources the Sim serves.
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// xdsType is one of the four SotW types, numbered in Istiod's push order.
type xdsType int

const (
	cdsType xdsType = iota
	edsType
	ldsType
	rdsType
	numTypes
)

var typeURLs = [numTypes]string{ClusterType, EndpointType, ListenerType, RouteType}

func (t xdsType) url() string { return typeURLs[t] }

func (t xdsType) String() string { return [numTypes]string{"CDS", "EDS", "LDS", "RDS"}[t] }

// wildcard reports whether Istiod serves t as a wildcard, full-state type
// (CDS, LDS) rather than as named subscriptions (EDS, RDS).
func (t xdsType) wildcard() bool { return t == cdsType || t == ldsType }

func typeOf(url string) (xdsType, bool) {
	for t, u := range typeURLs {
		if u == url {
			return xdsType(t), true
		}
	}
	return 0, false
}

// typeSet is a set of xdsTypes.
type typeSet uint8

func setOf(ts ...xdsType) typeSet {
	var s typeSet
	for _, t := range ts {
		s |= 1 << t
	}
	return s
}

func (s typeSet) has(t xdsType) bool { return s&(1<<t) != 0 }

func (s typeSet) urls() []string {
	var out []string
	for t := range numTypes {
		if s.has(t) {
			out = append(out, t.url())
		}
	}
	return out
}

var allTypes = setOf(cdsType, edsType, ldsType, rdsType)

// resource is one marshalled xDS resource and its name.
type resource struct {
	name string
	any  *anypb.Any
}

// serviceResources are the xDS resources of one service. They are immutable
// once built: a change builds a new value.
type serviceResources struct {
	// clusters are the CDS clusters: one per port, then one subset cluster
	// per port when enabled.
	clusters []resource
	// targets[i] is the target port of the endpoints of clusters[i].
	targets []uint32
	// loads are the EDS assignments, one per cluster, in the same order.
	loads []resource
	// listeners are the LDS listeners <vip>_<port>, one per port.
	listeners []resource
	// vhost is the service's virtual host in HTTPRoute; nil without port 80.
	vhost *routev3.VirtualHost
	// wds is what the workload API resources are built from (delta.go).
	wds *wdsSource
}

// buildServiceResources builds every resource of svc.
func buildServiceResources(svc *service, subsets bool) *serviceResources {
	r := &serviceResources{}
	subsetNames := []string{""}
	if subsets {
		subsetNames = append(subsetNames, subsetName)
	}
	for _, subset := range subsetNames {
		for _, p := range svc.ports {
			c := serviceCluster(svc, p, subset)
			r.clusters = append(r.clusters, resource{name: c.GetName(), any: mustAny(c)})
			r.targets = append(r.targets, p.TargetPort)
		}
	}
	for _, p := range svc.ports {
		l := outboundListener(svc.vip, p.Port, ClusterName(p.Port, "", svc.hostname))
		r.listeners = append(r.listeners, resource{name: l.GetName(), any: mustAny(l)})
		if p.Port == httpPort {
			r.vhost = virtualHost(svc)
		}
	}
	return r.withLoads(svc)
}

// withLoads returns a copy of r whose EDS assignments hold svc's current
// endpoints; the other resources are shared with r.
func (r *serviceResources) withLoads(svc *service) *serviceResources {
	n := *r
	n.loads = make([]resource, len(r.clusters))
	n.wds = newWDSSource(svc)
	for i, c := range r.clusters {
		n.loads[i] = resource{name: c.name, any: mustAny(loadAssignment(c.name, r.targets[i], svc.endpoints))}
	}
	return &n
}

// clusterNames are the names of svc's EDS clusters, the same as those of
// buildServiceResources, without building anything.
func clusterNames(svc *service, subsets bool) []string {
	var out []string
	for _, p := range svc.ports {
		out = append(out, ClusterName(p.Port, "", svc.hostname))
	}
	if subsets {
		for _, p := range svc.ports {
			out = append(out, ClusterName(p.Port, subsetName, svc.hostname))
		}
	}
	return out
}

var marshalOptions = proto.MarshalOptions{Deterministic: true}

// mustAny marshals m into an Any. Marshalling a well-formed generated
// message cannot fail, so a failure is a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, marshalOptions); err != nil {
		panic(fmt.Sprintf("istiodsim: marshal %T: %v", m, err))
	}
	return a
}

// buildAll builds the resources of every service, spread over the CPUs.
func buildAll(services []*service, subsets bool) {
	workers := min(runtime.GOMAXPROCS(0), max(1, len(services)/256))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(services); i += workers {
				services[i].res = buildServiceResources(services[i], subsets)
			}
		})
	}
	wg.Wait()
}
