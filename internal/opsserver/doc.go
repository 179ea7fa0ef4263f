// Package opsserver serves the operational HTTP endpoints both binaries expose
// on --metrics-listen (docs/contract.md): Prometheus /metrics, /healthz,
// /readyz and, when Options.Pprof is set, /debug/pprof/.
//
// The relay's and the node agent's mains and the demo import it (package
// relay's tests too); it imports nothing of meshrelay's.
package opsserver
