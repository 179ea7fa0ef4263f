// Package relay is the meshrelay relay as a library: it connects to Istiod
// as an xDS client, translates what Istiod pushes into per-service values,
// and writes them into etcd, deduplicated by content and coalesced in time.
//
// The stages, source to sink:
//
//	xds/sotw.Client ──Update──▶ Relay (translate.Index) ──Set/Complete──▶ etcdsink.Sink ──txns──▶ etcd
//
// In workload mode (xds/delta, translate/workload) the relay also stores
// Istio's authorization policies under authorizations/<namespace>/<name>
// (authorizations.go; docs/contract.md, section 1).
//
// The relay's main (relay/cmd/relay), the demo and the scale harness wire it
// up; several relays can run in one process. It must never import the node
// agent or cilium/ebpf (checked by internal/archtest).
package relay
