package cgroupclient

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	RunIfChild()
	os.Exit(m.Run())
}

const cgroupRoot = "/sys/fs/cgroup/unified"

// TestClientInCgroup: the client runs inside the cgroup and reaches
// backends (no programs attached: plain loopback).
func TestClientInCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a cgroup needs root")
	}
	if err := CheckCgroup2(cgroupRoot); err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	dir, err := NewCgroup(cgroupRoot, "meshrelay-cgroupclient-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := RemoveCgroup(dir); err != nil {
			t.Error(err)
		}
	}()
	tcp, err := ServeTCP(netip.MustParseAddrPort("127.0.0.1:0"), "alpha")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp, err := ServeUDP(netip.MustParseAddrPort("127.0.0.1:0"), "beta")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()

	c, err := Start(dir, "-test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	procs, err := os.ReadFile(dir + "/cgroup.procs")
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) == 0 {
		t.Error("cgroup.procs is empty: the client is not in the cgroup")
	}
	res, err := c.Do(Request{Op: "tcp", Addr: tcp.Addr.String(), N: 3})
	if err != nil || res.Backends["alpha"] != 3 || res.Peers[tcp.Addr.String()] != 3 {
		t.Fatalf("tcp: %+v %v", res, err)
	}
	if res, err := c.Do(Request{Op: "bench", Addr: tcp.Addr.String(), N: 4}); err != nil || res.Errors != 0 {
		t.Fatalf("bench: %+v %v", res, err)
	}
	// Accepts may trail the client's close by a moment.
	for i := 0; i < 100 && tcp.Served() < 7; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if got := tcp.Served(); got != 7 {
		t.Errorf("backend served %d connections, want 7", got)
	}
	res, err = c.Do(Request{Op: "udp", Addr: udp.Addr.String(), N: 2})
	if err != nil || res.Backends["beta"] != 2 {
		t.Fatalf("udp: %+v %v", res, err)
	}
	res, err = c.Do(Request{Op: "udpconn", Addr: udp.Addr.String(), N: 2})
	if err != nil || res.Backends["beta"] != 2 || res.Peers[udp.Addr.String()] != 2 {
		t.Fatalf("connected udp: %+v %v", res, err)
	}

	// IPv6 on ::1: every op that takes an IPv6 address.
	tcp6, err := ServeTCP(netip.MustParseAddrPort("[::1]:0"), "gamma")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp6.Close()
	udp6, err := ServeUDP(netip.MustParseAddrPort("[::1]:0"), "delta")
	if err != nil {
		t.Fatal(err)
	}
	defer udp6.Close()
	for _, op := range []string{"tcp", "tcp6"} {
		res, err = c.Do(Request{Op: op, Addr: tcp6.Addr.String(), N: 2})
		if err != nil || res.Backends["gamma"] != 2 || res.Peers[tcp6.Addr.String()] != 2 {
			t.Fatalf("%s to %s: %+v %v", op, tcp6.Addr, res, err)
		}
	}
	for _, op := range []string{"udp6", "udpconn"} {
		res, err = c.Do(Request{Op: op, Addr: udp6.Addr.String(), N: 2})
		if err != nil || res.Backends["delta"] != 2 || res.Peers[udp6.Addr.String()] != 2 {
			t.Fatalf("%s to %s: %+v %v", op, udp6.Addr, res, err)
		}
	}

	// Held sockets stay connected until released.
	if res, err := c.Do(Request{Op: "hold", Addr: tcp.Addr.String(), N: 3}); err != nil || res.Errors != 0 || res.Peers[tcp.Addr.String()] != 3 {
		t.Fatalf("hold: %+v %v", res, err)
	}
	if res, err := c.Do(Request{Op: "peers"}); err != nil || res.Errors != 0 || res.Peers[tcp.Addr.String()] != 3 {
		t.Fatalf("peers of held sockets: %+v %v", res, err)
	}
	if res, err := c.Do(Request{Op: "release"}); err != nil || res.Errors != 0 {
		t.Fatalf("release: %+v %v", res, err)
	}
	if res, err := c.Do(Request{Op: "peers"}); err != nil || len(res.Peers) != 0 {
		t.Fatalf("peers after release: %+v %v", res, err)
	}

	res, err = c.Do(Request{Op: "tcp", Addr: "127.0.0.1:1", N: 2})
	if err != nil || res.Errors != 2 || res.FirstErr == "" {
		t.Fatalf("refused connects not counted: %+v %v", res, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBackendRefusesNonLoopback(t *testing.T) {
	if _, err := ServeTCP(netip.MustParseAddrPort("192.0.2.1:80"), "x"); err == nil {
		t.Fatal("non-loopback backend accepted")
	}
}

// TestScan: "scan" connects once to each of N consecutive addresses from
// Addr's, counting the connects that succeed and the refused ones.
func TestScan(t *testing.T) {
	b, err := ServeTCP(netip.MustParseAddrPort("127.0.0.1:0"), "alpha")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var s session
	// 127.0.0.1 answers; nothing listens on 127.0.0.2 and .3 at that port.
	res := s.do(Request{Op: "scan", Addr: b.Addr.String(), N: 3})
	if res.Peers[b.Addr.String()] != 1 || len(res.Peers) != 1 || res.Errors != 2 {
		t.Fatalf("scan of 3 addresses from %s: %+v", b.Addr, res)
	}
	if res := s.do(Request{Op: "scan", Addr: "[::1]:80", N: 1}); res.Errors != 1 {
		t.Fatalf("scan from an IPv6 address: %+v", res)
	}
	if got, _ := scanAddr("127.0.255.255:80", 1); got != netip.MustParseAddrPort("127.1.0.0:80") {
		t.Fatalf("address after 127.0.255.255: %v", got)
	}
}

func TestResultAnswered(t *testing.T) {
	r := Result{Backends: map[string]int{"a": 3, "b": 2}}
	if n, err := r.Answered(map[string]bool{"a": true, "b": true}); n != 5 || err != nil {
		t.Fatalf("Answered = %d, %v; want 5, nil", n, err)
	}
	if n, err := r.Answered(map[string]bool{"a": true}); n != 5 || err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("Answered = %d, %v; want 5 and an error naming b", n, err)
	}
}
