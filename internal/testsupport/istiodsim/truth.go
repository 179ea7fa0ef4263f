package istiodsim

import (
	"slices"

	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// ServiceTruth is what the Sim holds about one service: the expected result
// of translating what it serves, independent of meshrelay's translator.
type ServiceTruth struct {
	// Index is the service's number: the svc argument of the mutations.
	Index     int
	Namespace string
	Name      string
	Hostname  string
	// VIPs are in 127.77.0.0/16.
	VIPs []string
	// Ports are sorted by port number.
	Ports     []Port
	Endpoints []EndpointTruth
}

// EndpointTruth is one endpoint of a service.
type EndpointTruth struct {
	// Address is in 127.0.0.0/8, outside 127.0.0.0/16 and 127.77.0.0/16,
	// and unique among the Sim's endpoints.
	Address string
	// Port is the target port of the service's lowest port.
	Port uint32
	// TargetPorts maps every service port to its target port. The map is
	// shared by the endpoints of a service: do not modify it.
	TargetPorts map[uint32]uint32
	// Weight is the load-balancing weight, 1 unless Options.Weights.
	Weight uint32
	Region string
	Zone   string
	Health v1.Health
}

// Truth returns every live service, by index, in the state the Sim holds
// now. With Options.Debounce the state may be ahead of the last push.
func (s *Sim) Truth() []ServiceTruth {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ServiceTruth, 0, len(s.services))
	for _, svc := range s.services {
		if !svc.deleted {
			out = append(out, svc.truth())
		}
	}
	return out
}

// TruthOf is Truth for the services of the given indexes only (those live),
// in the order given: what a caller that knows which services changed
// needs, without copying the whole mesh.
func (s *Sim) TruthOf(indexes []int) []ServiceTruth {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ServiceTruth, 0, len(indexes))
	for _, i := range indexes {
		if i >= 0 && i < len(s.services) && !s.services[i].deleted {
			out = append(out, s.services[i].truth())
		}
	}
	return out
}

// truth returns svc's state; the Sim's lock is held.
func (svc *service) truth() ServiceTruth {
	targets := make(map[uint32]uint32, len(svc.ports))
	for _, p := range svc.ports {
		targets[p.Port] = p.TargetPort
	}
	t := ServiceTruth{
		Index:     svc.index,
		Namespace: svc.namespace,
		Name:      svc.name,
		Hostname:  svc.hostname,
		VIPs:      []string{svc.vip},
		Ports:     slices.Clone(svc.ports),
		Endpoints: make([]EndpointTruth, 0, len(svc.endpoints)),
	}
	for _, ep := range svc.endpoints {
		t.Endpoints = append(t.Endpoints, EndpointTruth{
			Address:     ep.address,
			Port:        svc.ports[0].TargetPort,
			TargetPorts: targets,
			Weight:      ep.weight,
			Region:      ep.region,
			Zone:        ep.zone,
			Health:      v1.Health_HEALTHY,
		})
	}
	return t
}
