package datapath

import (
	"net/netip"
	"testing"
)

// ipv6Loopback is the only IPv6 address every test machine has: VIPs and
// backends differ by port.
var ipv6Loopback = netip.MustParseAddrPort("[::1]:0")

// TestProgramsIPv6 sends TCP and UDP through connect6, sendmsg6, recvmsg6
// and getpeername6 with a native IPv6 VIP ([::1]:port) and IPv6 backends
// ([::1]:other ports).
func TestProgramsIPv6(t *testing.T) {
	a := tcpBackendOn(t, ipv6Loopback, "a6")
	b := tcpBackendOn(t, ipv6Loopback, "b6")
	u := udpBackendOn(t, ipv6Loopback, "u6")
	// Nothing listens on the VIP ports: a connect that is not translated
	// is refused, a datagram not translated goes unanswered.
	tcpVIP := netip.MustParseAddrPort("[::1]:7780")
	udpVIP := netip.MustParseAddrPort("[::1]:7781")
	tcpKey := NewFrontendKey(tcpVIP, TCP)
	have := NewState()
	have.PutBackend(1, a)
	have.PutBackend(2, b)
	have.PutBackend(3, u)
	have.PutFrontend(tcpKey, 1, AssignSlots(nil, []WeightedBackend{{ID: 1, Weight: 1}, {ID: 2, Weight: 3}}, 0))
	have.PutFrontend(NewFrontendKey(udpVIP, UDP), 2, []uint32{3})
	e := newProgEnv(t, have)
	h := startHelper(t, e.cgroup)

	n := 400
	if testing.Short() {
		n = 200
	}
	// "tcp" is Go's dialer on an AF_INET6 socket, "tcp6" raw syscalls;
	// both read the peer with getpeername (getpeername6).
	for _, op := range []string{"tcp", "tcp6"} {
		res := h.do(helperCmd{Op: op, Addr: tcpVIP.String(), N: n})
		if res.Errors != 0 || res.Backends["a6"]+res.Backends["b6"] != n {
			t.Fatalf("%s: %d connects to %s: %+v", op, n, tcpVIP, res)
		}
		if res.Peers[tcpVIP.String()] != n {
			t.Errorf("%s: getpeername returned %v, want the VIP %s every time", op, res.Peers, tcpVIP)
		}
		// Weight 3 of 4; the tolerance is over 4.5 standard deviations.
		if share := float64(res.Backends["b6"]) / float64(n); share < 0.6 || share > 0.9 {
			t.Errorf("%s: backend b6 (weight 3 of 4) got %.2f of the connects: %v", op, share, res.Backends)
		}
	}

	// Unconnected UDP: sendto goes through sendmsg6, recvfrom through
	// recvmsg6, which must show the VIP as the source.
	res := h.do(helperCmd{Op: "udp6", Addr: udpVIP.String(), N: 20})
	if res.Errors != 0 || res.Backends["u6"] != 20 {
		t.Fatalf("udp6: datagrams to %s: %+v", udpVIP, res)
	}
	if res.Peers[udpVIP.String()] != 20 {
		t.Errorf("udp6: replies came from %v, want the VIP %s", res.Peers, udpVIP)
	}
	// Connected UDP: connect6, then getpeername6 must return the VIP.
	res = h.do(helperCmd{Op: "udpconn", Addr: udpVIP.String(), N: 20})
	if res.Errors != 0 || res.Backends["u6"] != 20 {
		t.Fatalf("udpconn: datagrams to %s: %+v", udpVIP, res)
	}
	if res.Peers[udpVIP.String()] != 20 {
		t.Errorf("udpconn: getpeername returned %v, want the VIP %s", res.Peers, udpVIP)
	}

	// The program tells families apart: an IPv6 VIP whose backend is IPv4
	// is left alone (refused: nothing listens on the VIP).
	v4 := tcpBackend(t, "v4")
	mixedVIP := netip.MustParseAddrPort("[::1]:7782")
	want := have.Clone()
	want.PutBackend(4, v4)
	want.PutFrontend(NewFrontendKey(mixedVIP, TCP), 3, []uint32{4})
	e.apply(t, have, want)
	if res := h.do(helperCmd{Op: "tcp", Addr: mixedVIP.String(), N: 3}); res.Errors != 3 {
		t.Errorf("an IPv6 VIP was sent to an IPv4 backend: %+v", res)
	}

	// Removing the TCP frontend: the VIP is no longer translated.
	have = want
	want = have.Clone()
	want.DeleteFrontend(tcpKey)
	e.apply(t, have, want)
	if res := h.do(helperCmd{Op: "tcp6", Addr: tcpVIP.String(), N: 3}); res.Errors != 3 {
		t.Errorf("after deleting %s connects still succeed: %+v", tcpVIP, res)
	}
}
