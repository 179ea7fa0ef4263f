// Package dpfake holds test doubles of the node agent's datapath
// (nodeagent/datapath.Datapath): Faulty injects a failed or partial batch
// into the datapath it wraps, Recorder remembers every change set applied
// through it, PinDir gives a test a pin directory for the bpf datapath
// or skips it where BPF maps cannot be pinned, and CgroupEnv adds a child
// cgroup for its programs.
//
// The tests of package nodeagent and the end-to-end tests (e2e, e2e/chaos)
// import it, and the node agent command's tests for PinDir; the shipped binaries
// never link it (checked by internal/archtest).
package dpfake
