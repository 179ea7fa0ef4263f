package workload

import (
	"net/netip"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/istio/pkg/workloadapi"
)

// svc returns a Service Address in namespace ns named name with the given
// VIPs and service_port→target_port pairs.
func svc(ns, name string, vips []string, ports ...uint32) *workloadapi.Address {
	s := &workloadapi.Service{Name: name, Namespace: ns, Hostname: name + "." + ns + ".svc.cluster.local"}
	for _, v := range vips {
		s.Addresses = append(s.Addresses, &workloadapi.NetworkAddress{Address: netip.MustParseAddr(v).AsSlice()})
	}
	for i := 0; i+1 < len(ports); i += 2 {
		s.Ports = append(s.Ports, &workloadapi.Port{ServicePort: ports[i], TargetPort: ports[i+1]})
	}
	return &workloadapi.Address{Type: &workloadapi.Address_Service{Service: s}}
}

// svcName is the Address resource name Istiod gives a Service.
func svcName(ns, name string) string { return ns + "/" + name + "." + ns + ".svc.cluster.local" }

// wl returns a Workload Address with the given addresses, node, zone, and
// services (reference → service_port,target_port pairs).
func wl(uid, node, zone string, addrs []string, services map[string][]uint32) *workloadapi.Address {
	w := &workloadapi.Workload{Uid: uid, Name: uid, Node: node, Services: map[string]*workloadapi.PortList{}}
	if zone != "" {
		w.Locality = &workloadapi.Locality{Region: "r", Zone: zone}
	}
	for _, a := range addrs {
		w.Addresses = append(w.Addresses, netip.MustParseAddr(a).AsSlice())
	}
	for ref, ps := range services {
		pl := &workloadapi.PortList{}
		for i := 0; i+1 < len(ps); i += 2 {
			pl.Ports = append(pl.Ports, &workloadapi.Port{ServicePort: ps[i], TargetPort: ps[i+1]})
		}
		w.Services[ref] = pl
	}
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: w}}
}

func withStatus(a *workloadapi.Address, st workloadapi.WorkloadStatus, capacity uint32) *workloadapi.Address {
	a.GetWorkload().Status = st
	if capacity > 0 {
		a.GetWorkload().Capacity = wrapperspb.UInt32(capacity)
	}
	return a
}

func upserts(kv ...any) map[string]proto.Message {
	m := map[string]proto.Message{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(proto.Message)
	}
	return m
}
