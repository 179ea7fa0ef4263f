// Package opsserver serves the operational HTTP endpoints both binaries expose
// on --metrics-listen (BRIEF §2.3): Prometheus /metrics, /healthz, /readyz and
// /debug/pprof/.
//
// The relay and the node agent import it; it imports nothing of meshrelay's.
package opsserver
