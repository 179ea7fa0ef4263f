// Command scale-tests is meshrelay's scale harness: it runs a simulated
// cluster on one machine and measures what meshrelay costs and saves, side
// by side with what sidecarless meshes do today (every node agent on its
// own xDS stream to Istiod, writing map entries one syscall at a time).
//
//	go run ./scale-tests                      # the default run (see README.md)
//	make scale-test SCALE_ARGS="--nodes 1000 --scenario steady"
//
// This main is thin: it binds the flags (internal/config), runs the
// harness (internal/scenario) and maps the outcome to the exit status: 0
// when every mode ran and passed its correctness gate, 1 when a gate
// failed or a component died, 2 for a bad flag. With the hidden --role
// flag it plays one component instead (internal/launch runs the child,
// internal/roles the component). The work is in the packages under
// internal/:
//
//   - config: the flags of a run and their validation;
//   - launch, control: components as processes of their own, and the
//     JSON-over-HTTP control API on loopback the harness drives them by;
//   - roles: the Istiod simulator, etcd, relay replicas, the relay-mode
//     node pool (the real node agent) and the direct-mode node pool;
//   - workload: which services each node uses (Zipf, fixed seed);
//   - measure: /proc sampling, the push recorder, the datapath probe and
//     the push → map lag;
//   - gate: the correctness gate, from the simulator's truth alone;
//   - scenario: the phases of a run and the scenarios' changes;
//   - results, report: the typed results (summary.json), the targets,
//     report.md and the plots.
//
// This is a main package; nothing imports it. It imports the relay and
// node agent libraries through internal/roles, the Istiod simulator and
// embedded etcd.
package main
