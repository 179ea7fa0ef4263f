package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
)

// Translate translates every service in. It is the full pass used on a
// resync, by tests and by benchmarks; an Index gives the same services
// incrementally. A nil in translates to nothing.
func Translate(in *Inputs) (map[keyspace.Service]*model.Service, Report) {
	var rep Report
	if in == nil {
		return map[keyspace.Service]*model.Service{}, rep
	}
	byKey := make(map[keyspace.Service][]*serviceCluster)
	for name, c := range in.Clusters {
		sc, reason := classifyCluster(name, c)
		if sc == nil {
			rep.IgnoredClusters++
			rep.Ignored = append(rep.Ignored, IgnoredCluster{Name: name, Reason: reason})
			continue
		}
		byKey[sc.key] = append(byKey[sc.key], sc)
	}

	src := fullSource{assignments: in.Endpoints, vips: make(map[string][]netip.Addr)}
	for name, l := range in.Listeners {
		cl, warnings := listenerClaims(name, l)
		src.add(cl)
		rep.Warnings = append(rep.Warnings, warnings...)
	}
	for name, rc := range in.Routes {
		cl, warnings := routeClaims(name, rc)
		src.add(cl)
		rep.Warnings = append(rep.Warnings, warnings...)
	}

	out := make(map[keyspace.Service]*model.Service, len(byKey))
	owners := make(map[string]keyspace.Service) // VIP -> first service seen with it
	conflicts := make(map[string][]string)      // VIP -> every service with it, when several
	for key, clusters := range byKey {
		svc, st := translateService(key, clusters, src)
		out[key] = svc
		rep.Services++
		rep.Slices += len(svc.Slices)
		for _, sl := range svc.Slices {
			rep.Endpoints += len(sl.GetEndpoints())
		}
		rep.SkippedEndpoints += st.skippedEndpoints
		rep.Warnings = append(rep.Warnings, st.warnings...)
		for _, vip := range svc.Spec.GetVips() {
			if first, dup := owners[vip]; dup {
				if conflicts[vip] == nil {
					conflicts[vip] = []string{first.String()}
				}
				conflicts[vip] = append(conflicts[vip], key.String())
				continue
			}
			owners[vip] = key
		}
	}
	for vip, keys := range conflicts {
		slices.Sort(keys)
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("VIP %s belongs to several services: %s", vip, strings.Join(keys, ", ")))
	}
	rep.finish()
	return out, rep
}

// fullSource is the source of a full pass: the inputs' assignments and the
// VIP claims of every listener and route configuration, merged by hostname.
type fullSource struct {
	assignments map[string]*endpointv3.ClusterLoadAssignment
	vips        map[string][]netip.Addr
}

func (s fullSource) add(c claims) {
	for host, vips := range c {
		s.vips[host] = append(s.vips[host], vips...)
	}
}

func (s fullSource) assignment(name string) *endpointv3.ClusterLoadAssignment {
	return s.assignments[name]
}

func (s fullSource) appendVIPs(dst []netip.Addr, host string) []netip.Addr {
	return append(dst, s.vips[host]...)
}
