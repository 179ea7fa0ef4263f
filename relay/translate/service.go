package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// source is what translating one service reads besides its clusters. Both
// the full pass and the Index implement it.
type source interface {
	// assignment returns the ClusterLoadAssignment of an EDS service name,
	// nil when there is none.
	assignment(edsName string) *endpointv3.ClusterLoadAssignment
	// appendVIPs appends every VIP claimed for host, in any order.
	appendVIPs(dst []netip.Addr, host string) []netip.Addr
}

// serviceStats is what translating one service has to report.
type serviceStats struct {
	skippedEndpoints int
	warnings         []string
}

// translateService translates one service from its default clusters (in any
// order, at least one). It is the single place a model.Service is built.
func translateService(key keyspace.Service, clusters []*serviceCluster, src source) (*model.Service, serviceStats) {
	var st serviceStats
	clusters = slices.Clone(clusters)
	slices.SortFunc(clusters, func(a, b *serviceCluster) int {
		if c := cmp.Compare(a.host, b.host); c != 0 {
			return c
		}
		return cmp.Compare(a.port, b.port)
	})
	host := clusters[0].host
	n := 0
	for _, c := range clusters {
		if c.host != host {
			st.warnings = append(st.warnings, fmt.Sprintf("cluster %s: %s is already named by hostname %s, dropped", c.name, key, host))
			continue
		}
		clusters[n] = c
		n++
	}
	clusters = clusters[:n]

	ports := make([]portBackends, len(clusters))
	for i, c := range clusters {
		cla := c.inline
		if c.edsName != "" {
			cla = src.assignment(c.edsName)
		}
		bs, skipped := backends(cla)
		st.skippedEndpoints += skipped
		ports[i] = portBackends{port: c.port, backends: bs}
	}
	m := mergeBackends(ports)

	spec := &v1.ServiceSpec{
		Namespace:     key.Namespace,
		Name:          key.Name,
		Hostname:      host,
		Vips:          model.VIPs(src.appendVIPs(nil, host)),
		Ports:         make([]*v1.ServicePort, len(clusters)),
		LoadBalancing: clusters[0].lb,
	}
	for i, c := range clusters {
		spec.Ports[i] = &v1.ServicePort{
			Port:       c.port,
			TargetPort: m.targetPort[i],
			Protocol:   portProtocol(c.protocol, ports[i].backends),
			Name:       c.portName,
		}
	}
	return model.NewService(spec, m.endpoints), st
}

// portProtocol is the declared protocol, else UDP when every endpoint's
// socket address says UDP, else TCP.
func portProtocol(declared v1.Protocol, bs []backend) v1.Protocol {
	if declared != v1.Protocol_PROTOCOL_UNSPECIFIED {
		return declared
	}
	if len(bs) == 0 {
		return v1.Protocol_TCP
	}
	for _, b := range bs {
		if !b.udp {
			return v1.Protocol_TCP
		}
	}
	return v1.Protocol_UDP
}
