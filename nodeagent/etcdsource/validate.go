package etcdsource

import (
	"fmt"
	"net/netip"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// DefaultMaxFrontends is the default of Options.MaxFrontends.
const DefaultMaxFrontends = 1024

// Reasons a value is invalid, the reason label of
// meshrelay_nodeagent_invalid_values_total.
const (
	ReasonDecode      = "decode"       // not a ServiceSpec / EndpointSlice
	ReasonKeyMismatch = "key_mismatch" // names another service, or another slice index
	ReasonSliceCount  = "slice_count"  // endpoint_slices beyond keyspace.MaxSlices
	ReasonSliceSize   = "slice_size"   // more than model.MaxSliceEndpoints endpoints
	ReasonPort        = "port"         // a service port 0, or a port beyond 65535
	ReasonAddress     = "address"      // a VIP or endpoint address that does not parse
	ReasonVIPOutside  = "vip_outside_cidrs"
	ReasonFrontends   = "frontends" // more VIP × port frontends than Options.MaxFrontends
)

// invalidReasons lists every reason, for metrics and Stats.
var invalidReasons = []string{ReasonDecode, ReasonKeyMismatch, ReasonSliceCount, ReasonSliceSize,
	ReasonPort, ReasonAddress, ReasonVIPOutside, ReasonFrontends}

// InvalidValueError is a value under services/ the source refuses: its
// service is held at the last good state (docs/contract.md, "Validation
// by the node agent").
type InvalidValueError struct {
	Key    string
	Reason string // one of the Reason constants
	Err    error
}

func (e *InvalidValueError) Error() string {
	return fmt.Sprintf("invalid value %s (%s): %v", e.Key, e.Reason, e.Err)
}

func (e *InvalidValueError) Unwrap() error { return e.Err }

// limits are what a value is checked against.
type limits struct {
	cidrs        []netip.Prefix // empty: any VIP
	maxFrontends int
}

// checkSpec validates a decoded spec stored at svc's spec key. It returns
// the reason and the error, or "" and nil. Its work is bounded by the
// value's size, never by a count inside it.
func (l limits) checkSpec(svc keyspace.Service, spec *v1.ServiceSpec) (string, error) {
	if (spec.GetNamespace() != "" || spec.GetName() != "") &&
		(spec.GetNamespace() != svc.Namespace || spec.GetName() != svc.Name) {
		return ReasonKeyMismatch, fmt.Errorf("spec names %s/%s", spec.GetNamespace(), spec.GetName())
	}
	if n := spec.GetEndpointSlices(); n > keyspace.MaxSlices {
		return ReasonSliceCount, fmt.Errorf("endpoint_slices %d beyond %d", n, keyspace.MaxSlices)
	}
	for _, p := range spec.GetPorts() {
		if p.GetPort() == 0 || p.GetPort() > 65535 || p.GetTargetPort() > 65535 {
			return ReasonPort, fmt.Errorf("port %d target %d", p.GetPort(), p.GetTargetPort())
		}
	}
	for _, s := range spec.GetVips() {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return ReasonAddress, fmt.Errorf("vip %q: %w", s, err)
		}
		if len(l.cidrs) > 0 && !contains(l.cidrs, a.Unmap()) {
			return ReasonVIPOutside, fmt.Errorf("vip %s outside the service CIDRs %v", a, l.cidrs)
		}
	}
	if n := len(spec.GetVips()) * len(spec.GetPorts()); l.maxFrontends > 0 && n > l.maxFrontends {
		return ReasonFrontends, fmt.Errorf("%d VIPs × %d ports = %d frontends, beyond %d",
			len(spec.GetVips()), len(spec.GetPorts()), n, l.maxFrontends)
	}
	return "", nil
}

// checkSlice validates a decoded slice stored at endpoints/<index>.
func checkSlice(index int, sl *v1.EndpointSlice) (string, error) {
	if int64(sl.GetSlice()) != int64(index) {
		return ReasonKeyMismatch, fmt.Errorf("slice field %d under endpoints/%d", sl.GetSlice(), index)
	}
	if n := len(sl.GetEndpoints()); n > model.MaxSliceEndpoints {
		return ReasonSliceSize, fmt.Errorf("%d endpoints, beyond %d", n, model.MaxSliceEndpoints)
	}
	for _, ep := range sl.GetEndpoints() {
		if _, err := netip.ParseAddr(ep.GetAddress()); err != nil {
			return ReasonAddress, fmt.Errorf("endpoint %q: %w", ep.GetAddress(), err)
		}
		if ep.GetPort() > 65535 {
			return ReasonPort, fmt.Errorf("endpoint %s port %d", ep.GetAddress(), ep.GetPort())
		}
		for sp, tp := range ep.GetTargetPorts() {
			if sp == 0 || sp > 65535 || tp > 65535 {
				return ReasonPort, fmt.Errorf("endpoint %s target port %d -> %d", ep.GetAddress(), sp, tp)
			}
		}
	}
	return "", nil
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
