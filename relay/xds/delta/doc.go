// Package delta is the relay's upstream client for Istio's ambient workload
// API: one incremental (delta) DeltaAggregatedResources stream to Istiod that
// subscribes wildcard to istio.workload.Address (WDS: Services and Workloads)
// and istio.security.Authorization, keeps the last good resources and reports
// what changed to a Handler. Istiod serves these types over delta ADS only.
//
// It speaks the protocol the way Istiod serves it:
//
//   - Each type is subscribed once per stream with the wildcard "*". A
//     response carries resources added or changed and names removed.
//   - Every response is ACKed or NACKed by its nonce. A response holding one
//     invalid resource is NACKed with error_detail and changes nothing: the
//     last good state is kept. Replies go out from a sender goroutine of
//     their own, so receiving never waits on gRPC flow control; a reply not
//     sent yet is replaced by the reply to a newer nonce of its type, the
//     only one Istiod reads (relay/xds/reconnect).
//   - A stream that ends for any reason is reopened with jittered
//     exponential backoff. Nothing is deleted while disconnected. The new
//     stream's first request of each type carries initial_resource_versions
//     for every resource the client holds, so Istiod sends only differences
//     (changed resources, and removals of names it no longer has).
//   - Changes are found by hashing each resource's bytes, so an identical
//     re-push reports nothing.
//
// The Handler receives Updates sequentially from the goroutine that runs
// Client.Run; Update.Complete tells it when the state of the current stream
// is complete enough for a mark-and-sweep downstream: after the first
// response of each type on the stream (or, for a type already known from an
// earlier stream that Istiod has nothing new for, after Options.SyncTimeout).
//
// Package relay imports it (relay/translate/workload consumes Address
// updates), and the scale harness for its workload-API direct nodes. It imports go-control-plane's discovery protos, grpc,
// the Prometheus client, Istio's published workloadapi types,
// internal/backoff, relay/xds/reconnect for the stream lifecycle and
// metrics it shares with relay/xds/sotw, and that sibling for the node
// identity, its checks and the Update type. Its metrics
// (meshrelay_relay_xds_*) are Prometheus collectors returned by
// Client.Metrics, one set per Client.
package delta
