package istiodsim

import (
	"cmp"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// loadAssignment is the EDS resource of one cluster: the endpoints grouped
// by locality (sorted by region and zone), each on targetPort, as Istiod
// builds it.
func loadAssignment(cluster string, targetPort uint32, eps []endpoint) *endpointv3.ClusterLoadAssignment {
	type locality struct{ region, zone string }
	groups := map[locality]*endpointv3.LocalityLbEndpoints{}
	weights := map[locality]uint32{}
	for _, ep := range eps {
		l := locality{ep.region, ep.zone}
		g := groups[l]
		if g == nil {
			g = &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Region: ep.region, Zone: ep.zone}}
			groups[l] = g
		}
		g.LbEndpoints = append(g.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(ep.address, targetPort),
			}},
			HealthStatus:        corev3.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapperspb.UInt32(ep.weight),
		})
		weights[l] += ep.weight
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	for l, g := range groups {
		g.LoadBalancingWeight = wrapperspb.UInt32(weights[l])
		cla.Endpoints = append(cla.Endpoints, g)
	}
	slices.SortFunc(cla.Endpoints, func(a, b *endpointv3.LocalityLbEndpoints) int {
		return cmp.Or(cmp.Compare(a.Locality.Region, b.Locality.Region), cmp.Compare(a.Locality.Zone, b.Locality.Zone))
	})
	return cla
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
