// Package datapath is the node agent's eBPF datapath: the layouts of the
// maps that translate service VIPs to backends (defined once in
// bpf/meshrelay.h and generated into Go by bpf2go), the Datapath interface
// the agent applies change sets through, and its implementations.
//
//   - BPF writes pinned kernel maps with batched syscalls
//     (BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH);
//   - Memory keeps the same maps in Go maps with identical semantics and
//     identical op and syscall accounting, for hosts without eBPF and for
//     the scale harness (thousands of instances in one process);
//   - Programs are the cgroup socket programs (bpf/meshrelay.c) that read
//     the maps and report misses and usage; Datapath.Attach installs them
//     (idempotent; configured by BPFOptions.Programs; nil on Memory).
//
// OpenBPF with BPFOptions.ReadOnly opens existing pins read-only and never
// creates maps (`nodeagent dump`).
//
// The agent computes the wanted State from etcd, diffs it against the
// applied one with DiffStates and hands the ChangeSet to Apply, which
// writes it make-before-break (see ChangeSet).
//
// The node agent imports it (package nodeagent, its command and dump
// view, its end-to-end tests), nodeagent/nodemodel for its types, the
// test fakes of internal/testsupport/dpfake that wrap a Datapath, and the
// scale harness (the memory datapath, and the bpf one in its demo). It is
// the only package of meshrelay that imports github.com/cilium/ebpf.
package datapath
