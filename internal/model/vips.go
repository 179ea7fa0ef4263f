package model

import (
	"net/netip"
	"slices"
)

// VIPs returns vips in the stored form of ServiceSpec.vips: sorted,
// deduplicated and formatted; nil when there are none. It sorts vips in
// place.
func VIPs(vips []netip.Addr) []string {
	if len(vips) == 0 {
		return nil
	}
	slices.SortFunc(vips, netip.Addr.Compare)
	vips = slices.Compact(vips)
	out := make([]string, len(vips))
	for i, v := range vips {
		out[i] = v.String()
	}
	return out
}
