// Package backoff is the jittered exponential backoff every retry loop of
// meshrelay uses: the upstream xDS reconnect, the relay's etcd writer and
// the node agent's etcd watches.
//
// Any package may import it; it imports nothing of meshrelay's.
package backoff
