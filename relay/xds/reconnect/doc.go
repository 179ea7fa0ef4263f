// Package reconnect is the stream lifecycle shared by the relay's upstream
// xDS clients: Loop reopens a stream with jittered exponential backoff until
// its context ends, Receive hands a stream's messages to the goroutine that
// handles them, Send sends its requests from a goroutine of its own (latest
// per type URL, so that receiving never waits on a blocked send), and
// DialOptions are the gRPC client options both use.
//
// relay/xds/sotw and relay/xds/delta import it.
package reconnect
