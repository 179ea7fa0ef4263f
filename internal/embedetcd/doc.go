// Package embedetcd runs a single-member etcd inside the current process,
// listening on loopback only.
//
// It backs the relay's default mode (no --etcd-endpoints), the tests of every
// package that talks to etcd, the demo and the scale harness. The data
// directory lives on tmpfs (/dev/shm) when available and fsync is disabled:
// meshrelay's etcd is a rebuildable cache (docs/contract.md), not a system of record.
//
// Any meshrelay package may import it. It imports nothing of meshrelay's.
package embedetcd
