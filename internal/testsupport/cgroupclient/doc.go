// Package cgroupclient runs socket clients in a child cgroup v2, for the
// tests and the demo of the eBPF datapath: the cgroup socket programs
// translate only sockets of processes in the cgroup they are attached to,
// so the process that drives a test must not be the one translated.
//
// A Client is the calling binary re-executed in the cgroup (clone3 with
// CLONE_INTO_CGROUP, so it never runs outside it). It reads one JSON
// Request per line on stdin and answers one JSON Result per line. A binary
// that starts clients must call RunIfChild first thing in main or TestMain.
//
// The datapath tests, the node agent's and its command's tests, the end-to-end tests
// (e2e) and the demo import it. It does not import cilium/ebpf.
package cgroupclient
