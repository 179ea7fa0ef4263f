// Package sotw is the relay's upstream xDS client: one State-of-the-World
// StreamAggregatedResources (ADS) stream to Istiod that keeps the last good
// clusters (CDS), listeners (LDS), endpoint assignments (EDS) and route
// configurations (RDS) and reports what changed to a Handler.
//
// It speaks the protocol the way Istiod expects it:
//
//   - CDS and LDS are wildcard, full-state subscriptions: a name missing from
//     a response is a delete.
//   - EDS and RDS are named subscriptions derived from the accepted clusters
//     (EDS clusters' service names) and listeners (HTTP connection managers'
//     route config names). Istiod pushes them partially, so they are merged
//     by name and deleted only when their name leaves the subscription. A
//     request with an empty name list is never sent, because Istiod reads it
//     as "unsubscribe".
//   - Every response is ACKed or NACKed; a NACKed response changes nothing.
//     Requests go out from a sender goroutine of their own, so the client
//     keeps receiving while a large ACK waits on gRPC flow control; a
//     request not sent yet is replaced by a newer one of its type
//     (relay/xds/reconnect), which carries everything it did.
//   - Versions and nonces belong to one stream; changes are found by hashing
//     each resource's bytes, so an identical re-push reports nothing.
//   - A stream that ends for any reason is reopened with jittered exponential
//     backoff, keeping the last good state and re-subscribing at once.
//
// The Handler receives Updates sequentially from the goroutine that runs
// Client.Run; Update.Complete tells it when the state of the current stream is
// complete enough for a mark-and-sweep downstream.
//
// Package relay imports it (its translator consumes Updates),
// relay/xds/delta for the Update type the two clients share, and the scale
// harness for its direct-mode nodes. It imports go-control-plane's
// protos, grpc and the Prometheus client; of meshrelay's, only
// internal/backoff and relay/xds/reconnect (stream lifecycle and
// metrics, shared with relay/xds/delta). Its metrics
// (meshrelay_relay_xds_*) are Prometheus collectors returned by
// Client.Metrics, one set per Client.
package sotw
