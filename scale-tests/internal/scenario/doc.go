// Package scenario runs the harness: for each mode (relay, then direct) a
// phase starts a fresh simulator with the same seed, the mode's
// components and its nodes, waits until every node's datapath matches the
// simulator's truth, makes the scenario's changes (churn, node failure,
// scale-up, Istiod restart, relay kill, etcd wipe), waits for
// convergence, applies the correctness gate again and collects the
// figures, printing a progress line every second. Run returns the
// results.
//
// Imported by the harness's main (scale-tests).
package scenario
