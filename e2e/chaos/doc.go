// Package chaos is meshrelay's reliability suite: multi-process fault
// cases on loopback that inject the faults a cache tier in front of every
// node's datapath must survive (etcd killed with SIGKILL and restarted
// empty, compacted, slow; the Istiod simulator restarted; push bursts; an
// agent killed under a connect loop; agent↔etcd partitions; hostile values,
// full maps, miss scans) and check, for each, convergence to the
// simulator's truth, that no datapath entry was removed while the
// replacement state was unknown, that no update was lost, and that memory
// stayed bounded. docs/reliability.md describes the cases and holds their
// results table.
//
// etcd, the relay and (for the bpf and CPU cases) node agents run in
// child processes: the test binary re-executes itself with
// MESHRELAY_CHAOS_ROLE set, so that a fault is a real SIGKILL or SIGSTOP
// of a real process.
//
// The package has no code besides this file; nothing imports it. `go test
// ./...` runs the small-scale cases (-short runs the CI subset); `make
// chaos` runs every case at larger scale and rewrites the results table
// of docs/reliability.md.
package chaos
