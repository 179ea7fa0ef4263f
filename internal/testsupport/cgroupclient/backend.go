package cgroupclient

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Backend is a TCP or UDP server that answers every connection (or
// datagram) with its name and a newline.
type Backend struct {
	Addr netip.AddrPort
	Name string
	// served counts the connections accepted (datagrams answered).
	served atomic.Uint64
	stop   func() error
	wg     sync.WaitGroup
}

// Served returns the number of connections the backend accepted (TCP) or
// datagrams it answered (UDP).
func (b *Backend) Served() uint64 { return b.served.Load() }

// Close stops the backend and waits for it.
func (b *Backend) Close() error {
	err := b.stop()
	b.wg.Wait()
	return err
}

// ServeTCP listens on addr (a loopback address, IPv4 or ::1; port 0 picks
// one).
func ServeTCP(addr netip.AddrPort, name string) (*Backend, error) {
	if !addr.Addr().IsLoopback() {
		return nil, fmt.Errorf("backend %s: not a loopback address", addr)
	}
	ln, err := net.ListenTCP(network("tcp", addr), net.TCPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", addr, err)
	}
	b := &Backend{Addr: ln.Addr().(*net.TCPAddr).AddrPort(), Name: name, stop: ln.Close}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.served.Add(1)
			c.Write([]byte(name + "\n"))
			c.Close()
		}
	}()
	return b, nil
}

// ServeUDP listens on addr (a loopback address, IPv4 or ::1; port 0 picks
// one).
func ServeUDP(addr netip.AddrPort, name string) (*Backend, error) {
	if !addr.Addr().IsLoopback() {
		return nil, fmt.Errorf("backend %s: not a loopback address", addr)
	}
	c, err := net.ListenUDP(network("udp", addr), net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", addr, err)
	}
	b := &Backend{Addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), Name: name, stop: c.Close}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		buf := make([]byte, 256)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			b.served.Add(1)
			c.WriteToUDPAddrPort([]byte(name+"\n"), from)
		}
	}()
	return b, nil
}

// network returns proto ("tcp" or "udp") with the family of addr: "tcp4"
// for an IPv4 address, "tcp6" for IPv6 (v4-mapped addresses are IPv6).
func network(proto string, addr netip.AddrPort) string {
	if addr.Addr().Is4() {
		return proto + "4"
	}
	return proto + "6"
}
