// Package embedetcd runs a single-member etcd inside the current process,
// listening on loopback only.
//
// It backs the relay's default mode (no --etcd-endpoints), the tests of every
// package that talks to etcd, the demo and the scale harness. The data
// directory lives on tmpfs (/dev/shm) when available and fsync is disabled:
// meshrelay's etcd is a rebuildable cache (docs/contract.md), not a system of record.
//
// The relay's main (the embedded default), the demo, the scale harness and
// tests (through internal/testsupport/testenv) import it. Of meshrelay's it
// imports only internal/etcddial.
package embedetcd
