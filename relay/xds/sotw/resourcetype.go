package sotw

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
)

// resourceType describes one of the four xDS types the client subscribes to.
type resourceType struct {
	url   string
	short string // CDS, LDS, EDS or RDS, for logs and errors
	// fullState types (CDS, LDS) are wildcard subscriptions whose every
	// response holds the whole set; the others are named and pushed partially.
	fullState bool
	// dependent is the named type whose subscription this type's resources
	// define (CDS → EDS, LDS → RDS), or "".
	dependent  string
	newMessage func() proto.Message
	// references returns the names of dependent resources m refers to. nil
	// for types without a dependent.
	references func(m proto.Message) ([]string, error)
}

var (
	clusterType = &resourceType{
		url: resourcev3.ClusterType, short: "CDS", fullState: true, dependent: resourcev3.EndpointType,
		newMessage: func() proto.Message { return new(clusterv3.Cluster) },
		references: clusterReferences,
	}
	listenerType = &resourceType{
		url: resourcev3.ListenerType, short: "LDS", fullState: true, dependent: resourcev3.RouteType,
		newMessage: func() proto.Message { return new(listenerv3.Listener) },
		references: listenerReferences,
	}
	endpointType = &resourceType{
		url: resourcev3.EndpointType, short: "EDS",
		newMessage: func() proto.Message { return new(endpointv3.ClusterLoadAssignment) },
	}
	routeType = &resourceType{
		url: resourcev3.RouteType, short: "RDS",
		newMessage: func() proto.Message { return new(routev3.RouteConfiguration) },
	}

	// resourceTypes is the order of the first requests on a stream: CDS and
	// LDS wildcards first, then the named types (as Envoy does).
	resourceTypes = []*resourceType{clusterType, listenerType, endpointType, routeType}
)

// typeByURL returns the resource type of a type URL, or nil.
func typeByURL(url string) *resourceType {
	for _, t := range resourceTypes {
		if t.url == url {
			return t
		}
	}
	return nil
}

// hcmTypeURL is the type URL of an HTTP connection manager's typed_config.
var hcmTypeURL = resourcev3.APITypePrefix + string((&hcmv3.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName())

// resourceName returns the name a resource is known by in xDS.
func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *clusterv3.Cluster:
		return r.GetName()
	case *listenerv3.Listener:
		return r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case *routev3.RouteConfiguration:
		return r.GetName()
	}
	return ""
}

// clusterReferences returns the EDS name of an EDS cluster: its
// eds_cluster_config.service_name, or its own name when that is empty.
// Other cluster types reference nothing.
func clusterReferences(m proto.Message) ([]string, error) {
	c := m.(*clusterv3.Cluster)
	if c.GetType() != clusterv3.Cluster_EDS {
		return nil, nil
	}
	if name := c.GetEdsClusterConfig().GetServiceName(); name != "" {
		return []string{name}, nil
	}
	return []string{c.GetName()}, nil
}

// listenerReferences returns the route configuration names that the HTTP
// connection managers of a listener's filter chains (and of its default
// filter chain) load over RDS. An HTTP connection manager whose config does
// not decode or validate makes the whole listener invalid, as in Envoy.
func listenerReferences(m proto.Message) ([]string, error) {
	l := m.(*listenerv3.Listener)
	chains := l.GetFilterChains()
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains[:len(chains):len(chains)], dc)
	}
	var names []string
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if f.GetName() != wellknown.HTTPConnectionManager && tc.GetTypeUrl() != hcmTypeURL {
				continue
			}
			if tc == nil {
				continue // config from ECDS, which Istiod does not use for HCM
			}
			if tc.GetTypeUrl() != hcmTypeURL {
				return nil, fmt.Errorf("filter %q: typed_config is %q, want %q", f.GetName(), tc.GetTypeUrl(), hcmTypeURL)
			}
			hcm := new(hcmv3.HttpConnectionManager)
			if err := tc.UnmarshalTo(hcm); err != nil {
				return nil, fmt.Errorf("filter %q: %w", f.GetName(), err)
			}
			if err := validateMessage(hcm); err != nil {
				return nil, fmt.Errorf("filter %q: %w", f.GetName(), err)
			}
			if name := hcm.GetRds().GetRouteConfigName(); name != "" {
				names = append(names, name)
			}
		}
	}
	return names, nil
}
