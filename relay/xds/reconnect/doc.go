// Package reconnect is the stream lifecycle shared by the relay's upstream
// xDS clients: Upstream.Run dials Istiod and, with Loop, reopens a stream
// with jittered exponential backoff until its context ends; Serve runs one
// stream, whose Pump receives its messages (Receive) for the goroutine that
// handles them and sends its requests from a goroutine of its own (Send,
// latest per type URL, so that receiving never waits on a blocked send);
// DialOptions are the gRPC client options; Metrics are the clients'
// Prometheus collectors (meshrelay_relay_xds_*) and Stats their snapshot.
// What differs between the two protocols (requests, caches, completeness)
// stays in each client.
//
// relay/xds/sotw and relay/xds/delta import it.
package reconnect
