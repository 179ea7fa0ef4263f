// Package roles holds the harness's components, each run as its own
// process (see scale-tests/internal/launch): the Istiod simulator with
// its change recorder (sim), embedded etcd (etcd), a relay replica
// (relay), the relay-mode node pool (relay-nodes: the real node agent,
// package nodeagent, many per process, memory datapath) and the
// direct-mode node pool (direct-nodes: one xDS stream per node, SotW or
// delta WDS, one map syscall per entry, built from meshrelay's own parts:
// relay/xds/sotw or relay/xds/delta, relay/translate or
// relay/translate/workload, nodeagent/nodemodel). It also declares
// the requests and answers of the verbs they serve.
//
// Imported by the harness's main (scale-tests: Lookup, to play a role)
// and scale-tests/internal/scenario (role names, requests and answers).
package roles
