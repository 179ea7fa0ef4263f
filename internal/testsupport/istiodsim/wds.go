package istiodsim

import (
	"encoding/hex"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/istio/pkg/workloadapi"
)

// Type URLs of the ambient workload API resources the Sim serves over delta
// ADS.
const (
	AddressType       = "type.googleapis.com/istio.workload.Address"
	AuthorizationType = "type.googleapis.com/istio.security.Authorization"
)

// wdsSource is what the workload API resources of one service are built
// from: the service's fields and a copy of its endpoints when its EDS
// resources were built, so that it serves the same published state as SotW.
// Its resources are built on first use only, once (see resources): a Sim
// without delta streams pays nothing, and a push rebuilds only the
// resources of the services it changed.
type wdsSource struct {
	namespace, name, hostname, vip string
	ports                          []Port
	endpoints                      []endpoint

	once  sync.Once
	built map[string]*discoveryv3.Resource
}

// resources returns the service's Address resources by name, built on the
// first call and shared (read-only) afterwards.
func (w *wdsSource) resources() map[string]*discoveryv3.Resource {
	w.once.Do(func() {
		w.built = map[string]*discoveryv3.Resource{}
		w.appendTo(w.built)
	})
	return w.built
}

func newWDSSource(svc *service) *wdsSource {
	return &wdsSource{
		namespace: svc.namespace, name: svc.name, hostname: svc.hostname, vip: svc.vip,
		ports: svc.ports, endpoints: slices.Clone(svc.endpoints),
	}
}

// ServiceAddressName is the Address resource name of a service, as Istiod
// names it: "<namespace>/<hostname>".
func ServiceAddressName(namespace, hostname string) string { return namespace + "/" + hostname }

// WorkloadAddressName is the Address resource name (the uid) of the
// workload behind an endpoint address: "Kubernetes//Pod/<namespace>/<pod>".
func WorkloadAddressName(namespace, address string) string {
	return "Kubernetes//Pod/" + namespace + "/" + podName(address)
}

func podName(address string) string { return "pod-" + strings.ReplaceAll(address, ".", "-") }

// appendTo appends the service's Address and one Workload Address per
// endpoint to dst.
func (w *wdsSource) appendTo(dst map[string]*discoveryv3.Resource) {
	svc := &workloadapi.Service{
		Name:      w.name,
		Namespace: w.namespace,
		Hostname:  w.hostname,
		Addresses: []*workloadapi.NetworkAddress{{Address: netip.MustParseAddr(w.vip).AsSlice()}},
	}
	ports := &workloadapi.PortList{}
	for _, p := range w.ports {
		svc.Ports = append(svc.Ports, &workloadapi.Port{ServicePort: p.Port, TargetPort: p.TargetPort})
		ports.Ports = append(ports.Ports, &workloadapi.Port{ServicePort: p.Port, TargetPort: p.TargetPort})
	}
	ref := ServiceAddressName(w.namespace, w.hostname)
	putAddress(dst, ref, &workloadapi.Address{Type: &workloadapi.Address_Service{Service: svc}})
	for _, ep := range w.endpoints {
		uid := WorkloadAddressName(w.namespace, ep.address)
		wl := &workloadapi.Workload{
			Uid:            uid,
			Name:           podName(ep.address),
			Namespace:      w.namespace,
			Addresses:      [][]byte{netip.MustParseAddr(ep.address).AsSlice()},
			TrustDomain:    "cluster.local",
			ServiceAccount: "default",
			CanonicalName:  w.name,
			WorkloadName:   w.name,
			WorkloadType:   workloadapi.WorkloadType_POD,
			Services:       map[string]*workloadapi.PortList{ref: ports},
			Status:         workloadapi.WorkloadStatus_HEALTHY,
			ClusterId:      "Kubernetes",
			Locality:       &workloadapi.Locality{Region: ep.region, Zone: ep.zone},
			Capacity:       wrapperspb.UInt32(ep.weight),
		}
		putAddress(dst, uid, &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: wl}})
	}
}

// putAddress stores a as a delta Resource whose version is the hash of its
// bytes, as Istiod versions WDS resources: equal content, equal version,
// whatever the instance.
func putAddress(dst map[string]*discoveryv3.Resource, name string, a *workloadapi.Address) {
	dst[name] = newDeltaResource(name, a)
}

// newDeltaResource is m as a delta Resource named name, versioned by the
// hash of its bytes.
func newDeltaResource(name string, m proto.Message) *discoveryv3.Resource {
	any := mustAny(m)
	sum := xxhash.Sum64(any.GetValue())
	v := hex.EncodeToString([]byte{byte(sum >> 56), byte(sum >> 48), byte(sum >> 40), byte(sum >> 32), byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
	return &discoveryv3.Resource{Name: name, Version: v, Resource: any}
}

// wdsState returns every Address resource of sn by name, built once per
// snapshot and shared by the delta streams (read-only).
func (sn *snapshot) wdsState() map[string]*discoveryv3.Resource {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.wds != nil {
		return sn.wds
	}
	out := map[string]*discoveryv3.Resource{}
	for _, r := range sn.services {
		if r != nil {
			maps.Copy(out, r.wds.resources())
		}
	}
	sn.wds = out
	return out
}
