package istiodsim

import (
	"net/netip"
	"testing"
)

func TestAddressesStayInTheirRanges(t *testing.T) {
	vips := netip.MustParsePrefix("127.77.0.0/16")
	for _, i := range []int{0, 1, 255, 256, MaxServices - 1} {
		a := netip.MustParseAddr(serviceVIP(i))
		if !vips.Contains(a) || a == vips.Addr() {
			t.Errorf("VIP of service %d is %s", i, a)
		}
	}
	seen := map[string]bool{}
	check := func(k uint64) {
		s := endpointAddress(k)
		a := netip.MustParseAddr(s)
		if !a.IsLoopback() || vips.Contains(a) || netip.MustParsePrefix("127.0.0.0/16").Contains(a) {
			t.Fatalf("endpoint %d has address %s", k, s)
		}
		if seen[s] {
			t.Fatalf("endpoint %d reuses address %s", k, s)
		}
		seen[s] = true
	}
	for k := range uint64(200_000) {
		check(k)
	}
	// Around the VIP block, which endpoints skip.
	for k := uint64(75 * 254 * 256); k < 78*254*256; k += 97 {
		check(k)
	}
}
