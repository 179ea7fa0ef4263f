package datapath

import (
	"net/netip"
	"os"
	"testing"

	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
)

// The program tests run their clients in a helper process placed in a
// child cgroup (the programs attach there, so the test process itself is
// never translated): the test binary re-executed by internal/testsupport/cgroupclient.

func TestMain(m *testing.M) {
	cgroupclient.RunIfChild()
	os.Exit(m.Run())
}

type (
	helperCmd    = cgroupclient.Request
	helperResult = cgroupclient.Result
)

// helper is a running helper process, stopped when the test ends.
type helper struct {
	t testing.TB
	c *cgroupclient.Client
}

// startHelper starts a helper process inside cgroup (a cgroup v2 directory).
func startHelper(t testing.TB, cgroup string) *helper {
	t.Helper()
	c, err := cgroupclient.Start(cgroup, "-test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &helper{t: t, c: c}
}

func (h *helper) do(cmd helperCmd) helperResult {
	h.t.Helper()
	res, err := h.c.Do(cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// heldConns are TCP connections a helper holds open to some VIPs, five
// more to each VIP per hold.
type heldConns struct {
	h    *helper
	vips []netip.AddrPort
	n    int // per VIP
}

func (c *heldConns) hold(t *testing.T, when string) {
	t.Helper()
	for _, vip := range c.vips {
		if res := c.h.do(helperCmd{Op: "hold", Addr: vip.String(), N: 5}); res.Errors != 0 || res.Peers[vip.String()] != 5 {
			t.Fatalf("%s: holding 5 connections to %s: %+v", when, vip, res)
		}
	}
	c.n += 5
}

// check fails t unless getpeername returns its VIP on every held connection.
func (c *heldConns) check(t *testing.T, when string) {
	t.Helper()
	res := c.h.do(helperCmd{Op: "peers"})
	ok := res.Errors == 0
	for _, vip := range c.vips {
		ok = ok && res.Peers[vip.String()] == c.n
	}
	if !ok {
		t.Fatalf("%s: getpeername of %d held connections to each of %v: %+v", when, c.n, c.vips, res)
	}
}

// requireCgroup2 skips unless BPF works and a cgroup v2 hierarchy is at
// DefaultCgroupPath.
func requireCgroup2(t testing.TB) {
	t.Helper()
	requireBPF(t)
	if err := cgroupclient.CheckCgroup2(DefaultCgroupPath); err != nil {
		t.Skipf("skipping program test: %v", err)
	}
}

// testCgroup creates a child cgroup, removed when the test ends (after
// its helpers exited).
func testCgroup(t testing.TB) string {
	t.Helper()
	requireCgroup2(t)
	dir, err := cgroupclient.NewCgroup(DefaultCgroupPath, "meshrelay-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cgroupclient.RemoveCgroup(dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}

var anyLoopback = netip.MustParseAddrPort("127.0.0.1:0")

// tcpBackend listens on 127.0.0.1 and answers every connection with name.
func tcpBackend(t testing.TB, name string) netip.AddrPort {
	t.Helper()
	return tcpBackendOn(t, anyLoopback, name)
}

// tcpBackendOn is tcpBackend on addr (a loopback address; port 0 picks one).
func tcpBackendOn(t testing.TB, addr netip.AddrPort, name string) netip.AddrPort {
	t.Helper()
	return tcpServer(t, addr, name).Addr
}

// tcpServer is tcpBackendOn returning the backend, which counts the
// connections it accepted.
func tcpServer(t testing.TB, addr netip.AddrPort, name string) *cgroupclient.Backend {
	t.Helper()
	b, err := cgroupclient.ServeTCP(addr, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// udpBackend answers every datagram on 127.0.0.1 with name.
func udpBackend(t testing.TB, name string) netip.AddrPort {
	t.Helper()
	return udpBackendOn(t, anyLoopback, name)
}

// udpBackendOn is udpBackend on addr (a loopback address; port 0 picks one).
func udpBackendOn(t testing.TB, addr netip.AddrPort, name string) netip.AddrPort {
	t.Helper()
	b, err := cgroupclient.ServeUDP(addr, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.Addr
}
