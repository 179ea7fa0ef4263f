package translate

import (
	"cmp"
	"net/netip"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// backend is one usable LbEndpoint of one service port.
type backend struct {
	addr     netip.Addr
	target   uint32
	weight   uint32
	locality string
	health   v1.Health
	node     string
	udp      bool
}

// backends returns the endpoints of cla that have an IP socket address and
// a port, in assignment order, and how many LbEndpoints it skipped.
func backends(cla *endpointv3.ClusterLoadAssignment) (out []backend, skipped int) {
	n := 0
	for _, lle := range cla.GetEndpoints() {
		n += len(lle.GetLbEndpoints())
	}
	if n == 0 {
		return nil, 0
	}
	out = make([]backend, 0, n)
	for _, lle := range cla.GetEndpoints() {
		locality := localityString(lle.GetLocality())
		for _, lb := range lle.GetLbEndpoints() {
			ep := lb.GetEndpoint()
			if name := lb.GetEndpointName(); name != "" {
				ep = cla.GetNamedEndpoints()[name]
			}
			sa := ep.GetAddress().GetSocketAddress()
			addr, err := netip.ParseAddr(sa.GetAddress())
			if err != nil || addr.Zone() != "" || sa.GetPortValue() == 0 || sa.GetPortValue() > 65535 {
				skipped++
				continue
			}
			weight := lb.GetLoadBalancingWeight().GetValue()
			if weight == 0 {
				weight = 1
			}
			istio := lb.GetMetadata().GetFilterMetadata()[istioMetadata]
			node := stringField(istio, "node_name")
			if node == "" {
				node = stringField(istio, "nodeName")
			}
			out = append(out, backend{
				addr:     addr.Unmap(),
				target:   sa.GetPortValue(),
				weight:   weight,
				locality: locality,
				health:   health(lb.GetHealthStatus()),
				node:     node,
				udp:      sa.GetProtocol() == corev3.SocketAddress_UDP,
			})
		}
	}
	return out, skipped
}

// localityString is "region/zone/subzone", or "" for no locality.
func localityString(l *corev3.Locality) string {
	if l.GetRegion() == "" && l.GetZone() == "" && l.GetSubZone() == "" {
		return ""
	}
	return l.GetRegion() + "/" + l.GetZone() + "/" + l.GetSubZone()
}

// health maps Envoy's health status; the two enums agree value for value,
// but spelling it out keeps them independent.
func health(h corev3.HealthStatus) v1.Health {
	switch h {
	case corev3.HealthStatus_HEALTHY:
		return v1.Health_HEALTHY
	case corev3.HealthStatus_UNHEALTHY:
		return v1.Health_UNHEALTHY
	case corev3.HealthStatus_DRAINING:
		return v1.Health_DRAINING
	case corev3.HealthStatus_TIMEOUT:
		return v1.Health_TIMEOUT
	case corev3.HealthStatus_DEGRADED:
		return v1.Health_DEGRADED
	}
	return v1.Health_HEALTH_UNKNOWN
}

// portBackends are the backends of one service port.
type portBackends struct {
	port     uint32
	backends []backend
}

// portBackend is a backend tagged with the index of its service port.
type portBackend struct {
	backend
	portIdx int
}

// merged is the result of mergeBackends.
type merged struct {
	endpoints []*v1.Endpoint
	// targetPort is, per input port, the target port most endpoints use
	// (ties: the lowest), 0 when it has none.
	targetPort []uint32
}

// mergeBackends merges the backends of a service's ports, which must be
// sorted by port, into one endpoint per address (see the package
// documentation), sorted by address then port.
func mergeBackends(ports []portBackends) merged {
	total := 0
	for _, p := range ports {
		total += len(p.backends)
	}
	all := make([]portBackend, 0, total)
	for i, p := range ports {
		for _, b := range p.backends {
			all = append(all, portBackend{backend: b, portIdx: i})
		}
	}
	// Stable: among equal (address, port, target) the assignment order
	// decides which duplicate is kept.
	slices.SortStableFunc(all, func(a, b portBackend) int {
		if c := a.addr.Compare(b.addr); c != 0 {
			return c
		}
		if c := cmp.Compare(a.portIdx, b.portIdx); c != 0 {
			return c
		}
		return cmp.Compare(a.target, b.target)
	})

	out := merged{endpoints: make([]*v1.Endpoint, 0, total), targetPort: make([]uint32, len(ports))}
	targets := make([][]uint32, len(ports))
	for i := 0; i < len(all); {
		first := len(out.endpoints)
		addr := all[i].addr
		for i < len(all) && all[i].addr == addr {
			p := all[i].portIdx
			rank := 0
			for ; i < len(all) && all[i].addr == addr && all[i].portIdx == p; i++ {
				b := &all[i]
				if rank > 0 && b.target == all[i-1].target {
					continue // the same address and target port again
				}
				targets[p] = append(targets[p], b.target)
				if first+rank == len(out.endpoints) {
					// Ports come in ascending order, so the port that
					// creates an endpoint is its lowest.
					out.endpoints = append(out.endpoints, &v1.Endpoint{
						Address:     addr.String(),
						Port:        b.target,
						Weight:      b.weight,
						Locality:    b.locality,
						Health:      b.health,
						NodeName:    b.node,
						TargetPorts: make(map[uint32]uint32, len(ports)),
					})
				}
				out.endpoints[first+rank].TargetPorts[ports[p].port] = b.target
				rank++
			}
		}
		slices.SortStableFunc(out.endpoints[first:], func(a, b *v1.Endpoint) int { return cmp.Compare(a.Port, b.Port) })
	}
	for p, t := range targets {
		out.targetPort[p] = mostCommon(t)
	}
	return out
}

// mostCommon returns the most frequent value of v (ties: the lowest), 0 for
// an empty v. It sorts v.
func mostCommon(v []uint32) uint32 {
	slices.Sort(v)
	var best uint32
	bestN := 0
	for i := 0; i < len(v); {
		j := i
		for j < len(v) && v[j] == v[i] {
			j++
		}
		if j-i > bestN {
			best, bestN = v[i], j-i
		}
		i = j
	}
	return best
}
