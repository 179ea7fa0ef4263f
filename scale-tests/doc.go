// Command scale-tests is meshrelay's scale harness: it runs a simulated
// cluster on one Machine and measures what meshrelay costs and saves, side
// by side with what sidecarless meshes do today (every node agent on its
// own xDS stream to Istiod, writing map entries one syscall at a time).
//
//	go run ./scale-tests                      # the default run (see README.md)
//	make scale-test SCALE_ARGS="--nodes 1000 --scenario steady"
//
// # Processes
//
// Every Component is a process of its own, so that /proc attributes CPU
// time and memory to it: the harness re-executes its own binary with a
// hidden --role flag (role.go) for the Istiod simulator (simrole.go),
// etcd (etcdrole.go), each relay replica (relayrole.go), the relay-mode
// node pool (relaypool.go: the real node agent, package nodeagent, many
// per process, memory datapath) and the direct-mode node pool
// (directpool.go, directnode.go). Children listen on 127.0.0.1 only, are
// controlled over a small JSON-over-HTTP API (control.go), die with the
// harness (Pdeathsig, and EOF on their stdin) and are stopped by PID
// (Component.go). A child that dies unexpectedly ends the run with its
// last output and a non-zero exit.
//
// # Run
//
// For each mode (relay, then direct) a phase (phase.go) starts a fresh
// simulator with the same seed, the mode's components and its nodes,
// waits until every node's datapath matches the simulator's truth, runs
// the scenario (scenario.go), waits for convergence and applies the
// correctness gate again (expected.go). Meanwhile it samples every
// process's CPU and RSS (Sampler.go, procstat.go) and prints a progress
// line every second (progress.go).
//
// # Measurements
//
// The simulator's process records every endpoint that appears or leaves
// and the push that carried it (Recorder.go); every node's datapath is
// wrapped in a Probe (Probe.go) that records when each backend address is
// written or deleted. Endpoint addresses are unique, so matching the two
// gives the push → map propagation lag of every (change, node) pair
// (lag.go). The workload (workload.go) gives each node services drawn from
// a Zipf distribution. The results directory gets Summary.json
// (Summary.go), report.md (report.go, targets.go) and PNG plots (plots.go).
//
// This is a main package; nothing imports it. It imports the relay and
// node agent libraries, the Istiod simulator and embedded etcd.
package main
