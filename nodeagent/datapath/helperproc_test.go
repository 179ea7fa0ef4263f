package datapath

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The program tests run their clients in a helper process placed in a
// child cgroup (the programs attach there, so the test process itself is
// never translated): the test binary re-executed with helperEnv set, which
// reads one JSON helperCmd per line on stdin and answers with one JSON
// helperResult per line on stdout, until stdin closes.

const helperEnv = "MESHRELAY_DATAPATH_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

type helperCmd struct {
	Op   string `json:"op"` // "tcp", "tcp6", "udp" or "bench"
	Addr string `json:"addr"`
	N    int    `json:"n"`
}

type helperResult struct {
	Backends map[string]int `json:"backends"` // what the backend answered, per answer
	Peers    map[string]int `json:"peers"`    // getpeername (tcp) or recvfrom source (udp)
	Errors   int            `json:"errors"`
	FirstErr string         `json:"first_err"`
	Nanos    int64          `json:"nanos"` // bench: time for all connects
}

// helperBudget bounds one command, whatever the datapath does.
const helperBudget = 20 * time.Second

func runHelper(in io.Reader, out io.Writer) int {
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var cmd helperCmd
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		res := helperResult{Backends: map[string]int{}, Peers: map[string]int{}}
		fail := func(err error) {
			if res.Errors == 0 {
				res.FirstErr = err.Error()
			}
			res.Errors++
		}
		deadline := time.Now().Add(helperBudget)
		switch cmd.Op {
		case "tcp":
			for i := 0; i < cmd.N && time.Now().Before(deadline); i++ {
				c, err := net.DialTimeout("tcp4", cmd.Addr, 2*time.Second)
				if err != nil {
					fail(err)
					continue
				}
				res.Peers[c.RemoteAddr().String()]++ // Go fills it from getpeername(2)
				c.SetDeadline(time.Now().Add(2 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					fail(err)
				} else {
					res.Backends[strings.TrimSpace(line)]++
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
		case "tcp6":
			// An AF_INET6 socket connecting to a v4-mapped address:
			// connect6 and getpeername6 (Go's net would use AF_INET).
			ap := netip.MustParseAddrPort(cmd.Addr)
			for i := 0; i < cmd.N && time.Now().Before(deadline); i++ {
				backend, peer, err := dial6(ap)
				if err != nil {
					fail(err)
					continue
				}
				res.Peers[peer.String()]++
				res.Backends[backend]++
			}
		case "udp":
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				fail(err)
				break
			}
			dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(cmd.Addr))
			buf := make([]byte, 256)
			for i := 0; i < cmd.N && time.Now().Before(deadline); i++ {
				if _, err := c.WriteToUDP([]byte("ping"), dst); err != nil {
					fail(err)
					continue
				}
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					fail(err)
					continue
				}
				res.Peers[from.String()]++ // recvfrom, after recvmsg4
				res.Backends[string(buf[:n])]++
			}
			c.Close()
		case "bench":
			start := time.Now()
			for i := 0; i < cmd.N && time.Now().Before(deadline); i++ {
				c, err := net.DialTimeout("tcp4", cmd.Addr, 2*time.Second)
				if err != nil {
					fail(err)
					continue
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
			res.Nanos = time.Since(start).Nanoseconds()
		default:
			fail(fmt.Errorf("unknown op %q", cmd.Op))
		}
		if err := enc.Encode(res); err != nil {
			return 2
		}
	}
	return 0
}

// dial6 connects an AF_INET6 TCP socket to ap, returns the first line the
// peer sends and the peer address getpeername reports.
func dial6(ap netip.AddrPort) (string, netip.AddrPort, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	if err := unix.Connect(fd, &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}); err != nil {
		return "", netip.AddrPort{}, fmt.Errorf("connect %s: %w", ap, err)
	}
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	sa6, ok := sa.(*unix.SockaddrInet6)
	if !ok {
		return "", netip.AddrPort{}, fmt.Errorf("getpeername returned %T", sa)
	}
	buf := make([]byte, 64)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	return strings.TrimSpace(string(buf[:n])), netip.AddrPortFrom(netip.AddrFrom16(sa6.Addr), uint16(sa6.Port)), nil
}

// helper is a running helper process.
type helper struct {
	t      testing.TB
	stdin  io.WriteCloser
	stdout *bufio.Scanner
	stderr *bytes.Buffer
}

// startHelper starts a helper process inside cgroup (a cgroup v2
// directory), stopped when the test ends.
func startHelper(t testing.TB, cgroup string) *helper {
	t.Helper()
	dir, err := os.Open(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	h := &helper{t: t, stderr: &bytes.Buffer{}}
	cmd.Stderr = h.stderr
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.stdout = bufio.NewScanner(out)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper in %s: %v", cgroup, err)
	}
	t.Cleanup(func() {
		h.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill() // our own child, by PID
			<-done
		}
	})
	return h
}

func (h *helper) do(cmd helperCmd) helperResult {
	h.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := h.stdin.Write(append(b, '\n')); err != nil {
		h.t.Fatalf("helper: %v (stderr: %s)", err, h.stderr)
	}
	if !h.stdout.Scan() {
		h.t.Fatalf("helper exited: %v (stderr: %s)", h.stdout.Err(), h.stderr)
	}
	var res helperResult
	if err := json.Unmarshal(h.stdout.Bytes(), &res); err != nil {
		h.t.Fatal(err)
	}
	return res
}

// requireCgroup2 skips unless BPF works and a cgroup v2 hierarchy is at
// DefaultCgroupPath.
func requireCgroup2(t testing.TB) {
	t.Helper()
	requireBPF(t)
	var st unix.Statfs_t
	if err := unix.Statfs(DefaultCgroupPath, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skipf("skipping program test: no cgroup v2 hierarchy at %s", DefaultCgroupPath)
	}
}

// testCgroup creates a child cgroup, removed when the test ends (after
// its helpers exited).
func testCgroup(t testing.TB) string {
	t.Helper()
	requireCgroup2(t)
	dir, err := os.MkdirTemp(DefaultCgroupPath, "meshrelay-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// rmdir fails while processes are still leaving; retry briefly.
		for i := 0; i < 100; i++ {
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", dir)
	})
	return filepath.Clean(dir)
}

// tcpBackend listens on 127.0.0.1 and answers every connection with name.
func tcpBackend(t testing.TB, name string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name + "\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// udpBackend answers every datagram on 127.0.0.1 with name.
func udpBackend(t testing.TB, name string) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 256)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort([]byte(name), from)
		}
	}()
	t.Cleanup(func() { c.Close(); wg.Wait() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}
