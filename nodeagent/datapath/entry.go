package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The map keys and values are the structs of bpf/meshrelay.h as bpf2go
// generates them (meshrelay_bpfel.go), so Go and C share one layout.
// Addresses are 16 bytes (IPv4 v4-mapped); ports are in network byte order
// in memory: build and read them with the constructors and methods below
// rather than by setting fields.
type (
	// FrontendKey is a service frontend: VIP (Addr), service port (Port,
	// network order), protocol (Proto); Pad must be zero.
	FrontendKey = meshrelayFrontendKey
	// FrontendValue names the frontend's slots (FrontendId) and how many
	// there are (SlotCount; 0 = a known service without backends).
	FrontendValue = meshrelayFrontendValue
	// SlotKey is one slot (Slot, 0-based) of a frontend (FrontendId).
	SlotKey = meshrelaySlotKey
	// SlotValue is the backend (BackendId) a slot points at.
	SlotValue = meshrelaySlotValue
	// BackendKey is a backend id, allocated by the agent, one per distinct
	// (address, target port).
	BackendKey = meshrelayBackendKey
	// BackendValue is a backend's address (Addr), target port (Port,
	// network order) and family (Family, AF_INET or AF_INET6); Pad must be zero.
	BackendValue = meshrelayBackendValue
)

// Entry is one key and value of a map.
type Entry[K comparable, V any] struct {
	Key   K
	Value V
}

// Entries of the three agent-written maps.
type (
	Frontend = Entry[FrontendKey, FrontendValue]
	Slot     = Entry[SlotKey, SlotValue]
	Backend  = Entry[BackendKey, BackendValue]
)

// Protocol is an IP protocol number as the programs see it in
// bpf_sock_addr.protocol.
type Protocol uint8

// The protocols a frontend can have.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

// String returns "tcp", "udp" or the number.
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Address families as stored in BackendValue.Family (Linux values).
const (
	familyIPv4 = 2
	familyIPv6 = 10
)

// NewFrontendKey returns the key of the service frontend vip with protocol proto.
func NewFrontendKey(vip netip.AddrPort, proto Protocol) FrontendKey {
	return FrontendKey{Addr: vip.Addr().As16(), Port: toNetworkOrder(vip.Port()), Proto: uint8(proto)}
}

// AddrPort returns the frontend's VIP and service port.
func (k FrontendKey) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(k.Addr).Unmap(), fromNetworkOrder(k.Port))
}

// String formats the key as "tcp/127.77.0.1:80".
func (k FrontendKey) String() string {
	return Protocol(k.Proto).String() + "/" + k.AddrPort().String()
}

// NewBackendValue returns the value of a backend at addr (address and target port).
func NewBackendValue(addr netip.AddrPort) BackendValue {
	family := uint8(familyIPv6)
	if addr.Addr().Unmap().Is4() {
		family = familyIPv4
	}
	return BackendValue{Addr: addr.Addr().As16(), Port: toNetworkOrder(addr.Port()), Family: family}
}

// AddrPort returns the backend's address and target port.
func (v BackendValue) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(v.Addr).Unmap(), fromNetworkOrder(v.Port))
}

// String formats the value as its address and port.
func (v BackendValue) String() string { return v.AddrPort().String() }

// toNetworkOrder returns the uint16 whose in-memory bytes are p in network
// byte order, as the kernel stores sin_port.
func toNetworkOrder(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// fromNetworkOrder is the inverse of toNetworkOrder.
func fromNetworkOrder(p uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], p)
	return binary.BigEndian.Uint16(b[:])
}
