package translate

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// hcmType is the type URL of the HTTP connection manager's config.
const hcmType = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

// listenerRoutes returns the RDS route configuration names a listener's
// HTTP connection managers read. A route named here and not received yet
// may claim VIPs for any hostname: until it arrives, VIPs are unknown.
func listenerRoutes(l *listenerv3.Listener) []string {
	var names []string
	for _, fc := range filterChains(l) {
		for _, f := range fc.GetFilters() {
			if f.GetTypedConfig().GetTypeUrl() != hcmType {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := anypb.UnmarshalTo(f.GetTypedConfig(), hcm, proto.UnmarshalOptions{}); err != nil {
				continue
			}
			if n := hcm.GetRds().GetRouteConfigName(); n != "" {
				names = append(names, n)
			}
		}
	}
	return names
}

// RoutesPending is the number of RDS route configurations listeners name
// that the Index has not received: until they arrive, the VIPs they may
// claim are unknown, not absent (docs/contract.md, "Unknown is not empty").
func (x *Index) RoutesPending() int {
	n := 0
	for name := range x.routeRefs {
		if _, ok := x.routes[name]; !ok {
			n++
		}
	}
	return n
}

// refRoutes updates the route references when a listener changes from old
// to now (either may be nil).
func (x *Index) refRoutes(old, now *indexedClaims) {
	if old != nil {
		for _, n := range old.routes {
			if x.routeRefs[n]--; x.routeRefs[n] <= 0 {
				delete(x.routeRefs, n)
			}
		}
	}
	if now != nil {
		for _, n := range now.routes {
			x.routeRefs[n]++
		}
	}
}
