package workload

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	"istio.io/istio/pkg/workloadapi"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// translateService translates one Service resource and the workloads (by
// resource name) that list it. It is the single place a model.Service is
// built.
func translateService(k keyspace.Service, svc *workloadapi.Service, members map[string]*workloadapi.Workload) *model.Service {
	ports := servicePorts(svc)
	ref := reference(svc.GetNamespace(), svc.GetHostname())

	// Workloads in uid order, so that of two giving the same address and
	// port the smallest uid's endpoint is kept whatever the map order.
	names := slices.Sorted(maps.Keys(members))
	var eps []*v1.Endpoint
	for _, name := range names {
		eps = appendEndpoints(eps, members[name], members[name].GetServices()[ref], ports)
	}
	slices.SortStableFunc(eps, compareEndpoints)
	eps = slices.CompactFunc(eps, func(a, b *v1.Endpoint) bool { return compareEndpoints(a, b) == 0 })

	spec := &v1.ServiceSpec{
		Namespace:     k.Namespace,
		Name:          k.Name,
		Hostname:      svc.GetHostname(),
		Vips:          vips(svc.GetAddresses()),
		Ports:         make([]*v1.ServicePort, len(ports)),
		LoadBalancing: v1.LoadBalancing_ROUND_ROBIN,
	}
	for i, p := range ports {
		target := p.target
		if target == 0 {
			target = commonTarget(eps, p.port)
		}
		spec.Ports[i] = &v1.ServicePort{Port: p.port, TargetPort: target, Protocol: v1.Protocol_TCP}
	}
	return model.NewService(spec, eps)
}

// port is one service port and its declared target port (0: per workload).
type port struct {
	port, target uint32
}

// servicePorts returns the valid ports of svc sorted by port, the first of
// duplicates kept.
func servicePorts(svc *workloadapi.Service) []port {
	out := make([]port, 0, len(svc.GetPorts()))
	for _, p := range svc.GetPorts() {
		if p.GetServicePort() == 0 || p.GetServicePort() > 65535 || p.GetTargetPort() > 65535 {
			continue
		}
		out = append(out, port{port: p.GetServicePort(), target: p.GetTargetPort()})
	}
	slices.SortStableFunc(out, func(a, b port) int { return cmp.Compare(a.port, b.port) })
	return slices.CompactFunc(out, func(a, b port) bool { return a.port == b.port })
}

// appendEndpoints appends one endpoint per usable address of wl, serving the
// service ports listed (see the package documentation). A workload that
// serves none of the service's ports gives nothing.
func appendEndpoints(dst []*v1.Endpoint, wl *workloadapi.Workload, listed *workloadapi.PortList, ports []port) []*v1.Endpoint {
	targets := make(map[uint32]uint32, len(ports))
	if len(listed.GetPorts()) == 0 {
		for _, p := range ports {
			targets[p.port] = cmp.Or(p.target, p.port)
		}
	}
	for _, lp := range listed.GetPorts() {
		i, ok := slices.BinarySearchFunc(ports, lp.GetServicePort(), func(p port, sp uint32) int { return cmp.Compare(p.port, sp) })
		if !ok {
			continue
		}
		if _, dup := targets[lp.GetServicePort()]; dup {
			continue
		}
		t := lp.GetTargetPort()
		if t == 0 || t > 65535 {
			t = cmp.Or(ports[i].target, ports[i].port)
		}
		targets[lp.GetServicePort()] = t
	}
	if len(targets) == 0 {
		return dst
	}
	lowest := slices.Min(slices.Collect(maps.Keys(targets)))
	health := v1.Health_HEALTHY
	if wl.GetStatus() != workloadapi.WorkloadStatus_HEALTHY {
		health = v1.Health_UNHEALTHY
	}
	weight := wl.GetCapacity().GetValue()
	if weight == 0 {
		weight = 1
	}
	for _, raw := range wl.GetAddresses() {
		addr, ok := netip.AddrFromSlice(raw)
		if !ok {
			continue
		}
		dst = append(dst, &v1.Endpoint{
			Address:     addr.Unmap().String(),
			Port:        targets[lowest],
			Weight:      weight,
			Locality:    locality(wl.GetLocality()),
			Health:      health,
			NodeName:    wl.GetNode(),
			TargetPorts: maps.Clone(targets),
		})
	}
	return dst
}

// compareEndpoints orders endpoints by parsed address, then port.
func compareEndpoints(a, b *v1.Endpoint) int {
	aa, _ := netip.ParseAddr(a.GetAddress())
	ba, _ := netip.ParseAddr(b.GetAddress())
	return cmp.Or(aa.Compare(ba), cmp.Compare(a.GetPort(), b.GetPort()))
}

// commonTarget is the target port most endpoints use for service port sp
// (ties: the lowest), 0 when none serves it.
func commonTarget(eps []*v1.Endpoint, sp uint32) uint32 {
	counts := map[uint32]int{}
	for _, ep := range eps {
		if t, ok := ep.GetTargetPorts()[sp]; ok {
			counts[t]++
		}
	}
	var best uint32
	bestN := 0
	for t, n := range counts {
		if n > bestN || (n == bestN && t < best) {
			best, bestN = t, n
		}
	}
	return best
}

// vips returns the IPs of addrs, sorted and deduplicated; addresses that are
// not 4 or 16 bytes are skipped.
func vips(addrs []*workloadapi.NetworkAddress) []string {
	ips := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.GetAddress()); ok {
			ips = append(ips, ip.Unmap())
		}
	}
	return model.VIPs(ips)
}

// locality is "region/zone/subzone", or "" for no locality.
func locality(l *workloadapi.Locality) string {
	if l.GetRegion() == "" && l.GetZone() == "" && l.GetSubzone() == "" {
		return ""
	}
	return l.GetRegion() + "/" + l.GetZone() + "/" + l.GetSubzone()
}
