// Package reconnect is the stream lifecycle shared by the relay's upstream
// xDS clients: Loop reopens a stream with jittered exponential backoff until
// its context ends, Receive hands a stream's messages to the goroutine that
// handles them, and DialOptions are the gRPC client options both use.
//
// relay/xds/delta imports it. relay/xds/sotw still has its own copy of the
// same loop; it is meant to use this package too.
package reconnect
