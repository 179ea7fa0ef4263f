package cgroupclient

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv marks a re-executed client process.
const childEnv = "MESHRELAY_CGROUP_CLIENT"

// Request is one thing for a client to do.
type Request struct {
	// Op is one of
	//   - "tcp": connect, read the backend's first line, close (the socket's
	//     family follows Addr);
	//   - "tcp6": the same over an AF_INET6 socket, also for v4-mapped VIPs;
	//   - "udp", "udp6": send "ping" with sendto from an unconnected
	//     AF_INET (AF_INET6, bound to ::1) socket and read the answer with
	//     recvfrom (sendmsg and recvmsg hooks);
	//   - "udpconn": connect a UDP socket (family of Addr), ask getpeername,
	//     then write "ping" and read the answer (connect and getpeername
	//     hooks);
	//   - "bench": connect and close only;
	//   - "scan": connect (TCP) once to each of N consecutive IPv4
	//     addresses from Addr's, on Addr's port, and close; a refused
	//     connect is an error, a connect that succeeds is counted in Peers;
	//   - "hold": connect N TCP sockets (family of Addr) and keep them open;
	//     Peers counts what getpeername returned at once;
	//   - "peers": getpeername of every held socket now (N is ignored);
	//   - "release": close every held socket.
	Op   string `json:"op"`
	Addr string `json:"addr"`
	// N is the number of attempts.
	N int `json:"n"`
	// Interval spaces the attempts (default none).
	Interval time.Duration `json:"interval,omitempty"`
}

// Result counts what happened.
type Result struct {
	// Backends counts the first line each answer carried (the backend's name).
	Backends map[string]int `json:"backends"`
	// Peers counts the peer address getpeername (tcp) or recvfrom (udp) gave.
	Peers    map[string]int `json:"peers"`
	Errors   int            `json:"errors"`
	FirstErr string         `json:"first_err"`
	// Nanos is the time all attempts took.
	Nanos int64 `json:"nanos"`
}

// budget bounds one request, whatever the datapath does.
const budget = 60 * time.Second

// RunIfChild serves requests on stdin/stdout and exits when this process is
// a re-executed client; otherwise it returns at once.
func RunIfChild() {
	if os.Getenv(childEnv) == "1" {
		os.Exit(Serve(os.Stdin, os.Stdout))
	}
}

// Serve answers requests from in on out until in closes. It returns the
// process exit status.
func Serve(in io.Reader, out io.Writer) int {
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	var s session
	for sc.Scan() {
		var req Request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, "cgroupclient:", err)
			return 2
		}
		if err := enc.Encode(s.do(req)); err != nil {
			return 2
		}
	}
	return 0
}

// session is the state of one client process across requests.
type session struct {
	held []*net.TCPConn // the sockets "hold" keeps open
}

func (s *session) do(req Request) Result {
	res := Result{Backends: map[string]int{}, Peers: map[string]int{}}
	fail := func(err error) {
		if res.Errors == 0 {
			res.FirstErr = err.Error()
		}
		res.Errors++
	}
	switch req.Op {
	case "peers":
		for _, c := range s.held {
			if peer, err := peerOf(c); err != nil {
				fail(err)
			} else {
				res.Peers[peer]++
			}
		}
		return res
	case "release":
		for _, c := range s.held {
			c.SetLinger(0)
			c.Close()
		}
		s.held = nil
		return res
	}
	deadline := time.Now().Add(budget)
	start := time.Now()
	for i := 0; i < req.N && time.Now().Before(deadline); i++ {
		if i > 0 && req.Interval > 0 {
			time.Sleep(req.Interval)
		}
		switch req.Op {
		case "tcp":
			backend, peer, err := dialTCP(req.Addr, true)
			if err != nil {
				fail(err)
				continue
			}
			res.Peers[peer]++
			res.Backends[backend]++
		case "bench":
			if _, _, err := dialTCP(req.Addr, false); err != nil {
				fail(err)
			}
		case "scan":
			ap, err := scanAddr(req.Addr, i)
			if err != nil {
				fail(err)
				return res
			}
			if err := connect4(ap); err != nil {
				fail(err)
				continue
			}
			res.Peers[ap.String()]++
		case "hold":
			ap, err := netip.ParseAddrPort(req.Addr)
			if err != nil {
				fail(err)
				return res
			}
			c, err := net.DialTimeout(network("tcp", ap), req.Addr, 2*time.Second)
			if err != nil {
				fail(err)
				continue
			}
			s.held = append(s.held, c.(*net.TCPConn))
			peer, err := peerOf(c.(*net.TCPConn))
			if err != nil {
				fail(err)
				continue
			}
			res.Peers[peer]++
		case "tcp6":
			backend, peer, err := dial6(netip.MustParseAddrPort(req.Addr))
			if err != nil {
				fail(err)
				continue
			}
			res.Peers[peer.String()]++
			res.Backends[backend]++
		case "udp", "udp6":
			backend, peer, err := exchangeUDP(req.Op, req.Addr)
			if err != nil {
				fail(err)
				continue
			}
			res.Peers[peer]++
			res.Backends[backend]++
		case "udpconn":
			backend, peer, err := connectedUDP(req.Addr)
			if err != nil {
				fail(err)
				continue
			}
			res.Peers[peer]++
			res.Backends[backend]++
		default:
			fail(fmt.Errorf("unknown op %q", req.Op))
			return res
		}
	}
	res.Nanos = time.Since(start).Nanoseconds()
	return res
}

// dialTCP connects to addr; with read it returns the first line the peer
// sends and the address getpeername reports (Go fills RemoteAddr from it).
func dialTCP(addr string, read bool) (backend, peer string, err error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", "", err
	}
	c, err := net.DialTimeout(network("tcp", ap), addr, 2*time.Second)
	if err != nil {
		return "", "", err
	}
	defer func() {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	if !read {
		return "", "", nil
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimSpace(line), c.RemoteAddr().String(), nil
}

// exchangeUDP sends "ping" to addr from an unconnected socket of network
// "udp" (AF_INET, on 127.0.0.1) or "udp6" (AF_INET6, on ::1) and returns the
// answer and its source (after recvmsg4/6 restored the VIP).
func exchangeUDP(network, addr string) (backend, peer string, err error) {
	local := netip.MustParseAddrPort("127.0.0.1:0")
	if network == "udp6" {
		local = netip.MustParseAddrPort("[::1]:0")
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(local))
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	dst, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", "", err
	}
	if _, err := c.WriteToUDPAddrPort([]byte("ping"), dst); err != nil {
		return "", "", err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 256)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return "", "", err
	}
	return strings.TrimSpace(string(buf[:n])), from.String(), nil
}

// peerOf asks the kernel (getpeername) for c's peer now; Go's RemoteAddr
// is what getpeername said at connect time.
func peerOf(c syscallConn) (string, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return "", err
	}
	var sa unix.Sockaddr
	var serr error
	if err := raw.Control(func(fd uintptr) { sa, serr = unix.Getpeername(int(fd)) }); err != nil {
		return "", err
	}
	if serr != nil {
		return "", fmt.Errorf("getpeername: %w", serr)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String(), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String(), nil
	}
	return "", fmt.Errorf("getpeername returned %T", sa)
}

type syscallConn interface {
	SyscallConn() (syscall.RawConn, error)
}

// connectedUDP connects a UDP socket to addr, asks getpeername (after
// getpeername4/6 restored the VIP), then sends "ping" and returns the
// answer and that peer.
func connectedUDP(addr string) (backend, peer string, err error) {
	dst, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", "", err
	}
	c, err := net.DialUDP(network("udp", dst), nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	if peer, err = peerOf(c); err != nil {
		return "", "", err
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		return "", "", err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return "", "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimSpace(string(buf[:n])), peer, nil
}

// dial6 connects an AF_INET6 TCP socket to ap (connect6 and getpeername6,
// which Go's net would not use for a v4-mapped address), returns the first
// line the peer sends and the peer address getpeername reports.
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
	if err := blockingConnect(fd, &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}); err != nil {
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

// scanAddr is the i-th IPv4 address from addr's, on addr's port.
func scanAddr(addr string, i int) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if !ap.Addr().Is4() {
		return netip.AddrPort{}, fmt.Errorf("scan from %s: not an IPv4 address", addr)
	}
	a := ap.Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) + uint32(i)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrPortFrom(netip.AddrFrom4(a), ap.Port()), nil
}

// connect4 connects an AF_INET TCP socket to ap (at most 2 s) and closes
// it: a blocking connect, cheaper than net's for a scan of many addresses.
func connect4(ap netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	if err := blockingConnect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		return fmt.Errorf("connect %s: %w", ap, err)
	}
	return nil
}

// Answered is the number of attempts a backend answered, and an error
// naming the first backend (in name order) not among allowed.
func (r Result) Answered(allowed map[string]bool) (int, error) {
	total := 0
	var stray []string
	for name, n := range r.Backends {
		if !allowed[name] {
			stray = append(stray, name)
		}
		total += n
	}
	if len(stray) > 0 {
		sort.Strings(stray)
		return total, fmt.Errorf("answered by %q, not an allowed backend (%d strays)", stray[0], len(stray))
	}
	return total, nil
}

// blockingConnect connects the blocking socket fd to sa. A connect
// interrupted by a signal (EINTR: the Go runtime preempts threads with
// one) goes on in the kernel: it waits (at most 2 s a round, 5 rounds) for
// the socket to become writable and returns the connect's own result.
func blockingConnect(fd int, sa unix.Sockaddr) error {
	err := unix.Connect(fd, sa)
	for range 5 {
		if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EALREADY) {
			return err
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, perr := unix.Poll(pfd, 2000)
		if perr != nil && !errors.Is(perr, unix.EINTR) {
			return perr
		}
		if n == 0 || pfd[0].Revents == 0 {
			continue // timed out or interrupted again: wait another round
		}
		soerr, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if gerr != nil {
			return gerr
		}
		if soerr != 0 {
			return unix.Errno(soerr)
		}
		return nil
	}
	return err
}
