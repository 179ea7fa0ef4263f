package launch

// ReadyPrefix starts the line a child prints on stdout once it serves.
const ReadyPrefix = "READY "

// ReadyInfo is what a child reports when it is ready.
type ReadyInfo struct {
	// Control is the child's control address (HTTP on loopback).
	Control string `json:"control"`
	// Addr is the role's service address: the simulator's xDS address or
	// etcd's client URL.
	Addr string `json:"addr,omitempty"`
}
