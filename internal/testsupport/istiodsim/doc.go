// Package istiodsim is an Istio-shaped xDS server that tests, the demo and
// the scale harness use in place of Istiod.
//
// A Sim generates a mesh of services with Istio's naming (namespaces
// ns-<i>, services svc-<i>, clusters outbound|<port>||<hostname>, listeners
// <vip>_<port>, route configuration "80") and serves it over real gRPC on a
// loopback listener as State-of-the-World ADS, reproducing the behaviours of
// Istiod that meshrelay's relay must cope with (docs/contract.md, section 5):
//
//   - CDS and LDS are wildcard and always carry the full state;
//   - EDS and RDS are named subscriptions; an EDS or RDS request with an
//     empty name list unsubscribes everything and is recorded as a protocol
//     violation (Sim.Violations), since meshrelay's client must never send one;
//   - endpoint changes are pushed as partial EDS responses carrying only the
//     changed clusters;
//   - versions and nonces are per simulator instance and change on Restart;
//   - pushes are debounced and sent to every stream without waiting for ACKs;
//   - a request carrying error_detail is a NACK and is recorded (Sim.Nacks).
//
// The simulator keeps its own truth (Sim.Truth): the expected state of every
// service, independent of any meshrelay code, which end-to-end tests compare
// against what the relay and node agent produced.
//
// Every resource is marshalled once per change, and every response body once
// per snapshot and subscription: streams share encoded bytes and differ only
// in their nonce.
//
// Delta ADS serves Istio's ambient workload API (delta.go, wds.go): a
// Service Address per service and a Workload Address per endpoint, built
// from the same snapshots as SotW, with content-hash versions; the
// subscriptions' initial_resource_versions are recorded
// (Sim.DeltaSubscriptions) and PushMalformedAddress injects an invalid
// Address. Sim.WaitAcked and the push queue cover SotW streams only.
//
// Only tests, the demo and the scale harness may import this package; the
// relay and the node agent must not.
package istiodsim
