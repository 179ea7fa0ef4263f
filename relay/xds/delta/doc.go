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
//     sent yet is replaced by the reply to a newer nonce of its type
//     (relay/xds/reconnect), so at most one reply per type waits, whatever
//     Istiod sends. See "Replies" below for why that loses nothing.
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
// # Replies
//
// The delta protocol asks for an ACK or NACK per response nonce; the client
// sends one for every response it handles, except that a reply still waiting
// for the sender when a newer response of the same type is handled is
// replaced by the newer one. That is correct for Istiod, whose handling of
// replies (shouldRespondDelta in pilot/pkg/xds/delta.go) is:
//
//   - a request with error_detail is logged, counted as a reject and kept as
//     the type's last error; nothing is re-sent (rejected resources come
//     again only when they change), so a NACK changes nothing Istiod sends;
//   - a request whose response_nonce is not the last nonce sent for the type
//     is discarded as expired: a reply to an older nonce, had it been sent
//     after the newer response left Istiod, would have been ignored anyway;
//   - an ACK of the last nonce only records it as acknowledged, which
//     Istiod's debug and sync status read; it never waits for ACKs before
//     pushing, and keeps no per-resource acknowledgement: what the client
//     holds is what Istiod sent.
//
// So the reply that matters is the one to the newest nonce of each type,
// and the replaced one is that reply: an ACK of nonce N+1 means the client
// applied N's resources too (it handles responses in order and applies a
// valid one before replying), and a NACK replaced by a later ACK loses only
// a count in Istiod's reject metric (this client logs and counts every
// NACK itself, meshrelay_relay_xds_nacks_total). Replies never collapse
// across types. TestRepliesCollapseToNewestNoncePerType checks this.
//
// Package relay imports it (relay/translate/workload consumes Address
// updates), and the scale harness for its workload-API direct nodes. It
// imports go-control-plane's discovery protos, grpc,
// the Prometheus client, Istio's published workloadapi types,
// internal/backoff, relay/xds/reconnect for the stream lifecycle and
// metrics it shares with relay/xds/sotw, and that sibling for the node
// identity, its checks and the Update type. Its metrics
// (meshrelay_relay_xds_*) are Prometheus collectors returned by
// Client.Metrics, one set per Client.
package delta
