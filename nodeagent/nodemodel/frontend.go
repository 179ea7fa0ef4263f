package nodemodel

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// Frontend is one frontend of a service on the node: a VIP, service port
// and protocol, and the backends its connections go to.
type Frontend struct {
	Key datapath.FrontendKey
	// Backends are sorted by address and port, without duplicates. An
	// empty list is a known service without usable endpoints.
	Backends []Backend
}

// Backend is one backend of a frontend.
type Backend struct {
	// Addr is the endpoint's address and its target port for the
	// frontend's service port.
	Addr netip.AddrPort
	// Weight is the load-balancing weight; 0 counts as 1 (see
	// datapath.AssignSlots).
	Weight uint32
}

// Translate returns the frontends of svc, sorted by VIP, port and protocol.
//
// For each VIP × service port there is one frontend of the port's protocol
// (TCP when unspecified). Its backends are the service's usable endpoints
// (see Usable) of the VIP's address family, each at its target port for
// that service port:
//
//   - Endpoint.target_ports[port] when the endpoint has a target_ports map.
//     An endpoint whose map lacks the port does not serve that port and is
//     no backend of it (the map lists every port the endpoint serves);
//   - otherwise Endpoint.port, and when that is 0 the ServicePort's
//     target_port.
//
// An address and target port listed twice keeps its first weight.
//
// Translate skips what the datapath cannot express and reports it in err,
// joined: VIPs and endpoint addresses that do not parse, ports out of
// range, SCTP ports (the socket programs translate TCP and UDP only). The
// frontends returned are usable even when err is not nil.
func Translate(svc *model.Service) ([]Frontend, error) {
	if svc == nil || svc.Spec == nil {
		return nil, nil
	}
	var errs []error
	spec := svc.Spec

	var vips []netip.Addr
	for _, s := range spec.GetVips() {
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("vip %q: %w", s, err))
			continue
		}
		a = a.Unmap()
		if !slices.Contains(vips, a) {
			vips = append(vips, a)
		}
	}

	type port struct {
		number uint16
		proto  datapath.Protocol
		target uint32
	}
	var ports []port
	for _, p := range spec.GetPorts() {
		if p.GetPort() == 0 || p.GetPort() > 65535 {
			errs = append(errs, fmt.Errorf("port %d: out of range", p.GetPort()))
			continue
		}
		proto, ok := protocol(p.GetProtocol())
		if !ok {
			errs = append(errs, fmt.Errorf("port %d: protocol %s is not translated", p.GetPort(), p.GetProtocol()))
			continue
		}
		ports = append(ports, port{number: uint16(p.GetPort()), proto: proto, target: p.GetTargetPort()})
	}
	if len(vips) == 0 || len(ports) == 0 {
		return nil, errors.Join(errs...)
	}

	// Parse every usable endpoint once.
	type endpoint struct {
		addr netip.Addr
		ep   *v1.Endpoint
	}
	n := 0
	for _, sl := range svc.Slices {
		n += len(sl.GetEndpoints())
	}
	eps := make([]endpoint, 0, n)
	badAddrs := 0
	for _, sl := range svc.Slices {
		for _, ep := range sl.GetEndpoints() {
			if !Usable(ep.GetHealth()) {
				continue
			}
			a, err := netip.ParseAddr(ep.GetAddress())
			if err != nil {
				if badAddrs == 0 {
					errs = append(errs, fmt.Errorf("endpoint address %q: %w", ep.GetAddress(), err))
				}
				badAddrs++
				continue
			}
			eps = append(eps, endpoint{addr: a.Unmap(), ep: ep})
		}
	}
	if badAddrs > 1 {
		errs = append(errs, fmt.Errorf("%d endpoint addresses did not parse", badAddrs))
	}

	// Backends per port and address family, shared by the VIPs of that family.
	backendsOf := func(p port, v4 bool) []Backend {
		out := make([]Backend, 0, len(eps))
		for _, e := range eps {
			if e.addr.Is4() != v4 {
				continue
			}
			target, ok := targetPort(e.ep, uint32(p.number), p.target)
			if !ok {
				continue
			}
			out = append(out, Backend{Addr: netip.AddrPortFrom(e.addr, target), Weight: e.ep.GetWeight()})
		}
		slices.SortStableFunc(out, func(a, b Backend) int { return a.Addr.Compare(b.Addr) })
		return slices.CompactFunc(out, func(a, b Backend) bool { return a.Addr == b.Addr })
	}
	type famPort struct {
		i  int
		v4 bool
	}
	cache := map[famPort][]Backend{}

	out := make([]Frontend, 0, len(vips)*len(ports))
	for _, vip := range vips {
		for i, p := range ports {
			fp := famPort{i, vip.Is4()}
			bs, ok := cache[fp]
			if !ok {
				bs = backendsOf(p, fp.v4)
				cache[fp] = bs
			}
			out = append(out, Frontend{
				Key:      datapath.NewFrontendKey(netip.AddrPortFrom(vip, p.number), p.proto),
				Backends: bs,
			})
		}
	}
	slices.SortFunc(out, func(a, b Frontend) int { return CompareKeys(a.Key, b.Key) })
	out = slices.CompactFunc(out, func(a, b Frontend) bool { return a.Key == b.Key })
	return out, errors.Join(errs...)
}

// Usable reports whether an endpoint of health h receives connections:
// HEALTHY and HEALTH_UNKNOWN (EDS's default when no health checking runs)
// do; UNHEALTHY, DRAINING, TIMEOUT and DEGRADED do not. The datapath picks
// among usable backends only and has no panic threshold: a frontend whose
// endpoints are all unusable has no slots.
func Usable(h v1.Health) bool {
	return h == v1.Health_HEALTHY || h == v1.Health_HEALTH_UNKNOWN
}

// CompareKeys orders frontend keys by VIP, port and protocol.
func CompareKeys(a, b datapath.FrontendKey) int {
	if c := a.AddrPort().Compare(b.AddrPort()); c != 0 {
		return c
	}
	return cmp.Compare(a.Proto, b.Proto)
}

// protocol maps a service port's protocol to the datapath's.
func protocol(p v1.Protocol) (datapath.Protocol, bool) {
	switch p {
	case v1.Protocol_PROTOCOL_UNSPECIFIED, v1.Protocol_TCP:
		return datapath.TCP, true
	case v1.Protocol_UDP:
		return datapath.UDP, true
	}
	return 0, false
}

// targetPort returns the port ep listens on for service port port (see
// Translate); ok is false when ep does not serve it.
func targetPort(ep *v1.Endpoint, port, specTarget uint32) (uint16, bool) {
	t := ep.GetPort()
	if tps := ep.GetTargetPorts(); len(tps) > 0 {
		var ok bool
		if t, ok = tps[port]; !ok {
			return 0, false
		}
	}
	if t == 0 {
		t = specTarget
	}
	if t == 0 || t > 65535 {
		return 0, false
	}
	return uint16(t), true
}
