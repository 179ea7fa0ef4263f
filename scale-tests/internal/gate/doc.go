// Package gate is the harness's correctness gate: what each simulated
// node's datapath must hold, computed from the Istiod simulator's truth
// alone (never from meshrelay's translator or node model), and the
// comparison of a node's datapath dump with it.
//
// Imported by scale-tests/internal/roles (the simulator serves the Truth,
// a node pool checks its nodes against it), scale-tests/internal/scenario
// and scale-tests/internal/results (Result).
package gate
