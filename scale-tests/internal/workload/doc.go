// Package workload decides which services each simulated node uses: a
// Zipf distribution over all services with a fixed seed, so that the same
// configuration gives the same nodes in both modes and in every run. It
// also names the simulator's services (ServiceKey, ServiceVIP,
// ServicePorts) the way internal/testsupport/istiodsim does.
//
// Imported by scale-tests/internal/{roles, scenario, results}.
package workload
