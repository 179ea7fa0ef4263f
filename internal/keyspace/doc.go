// Package keyspace is meshrelay's etcd contract (docs/contract.md): every key
// name, the strict parsing of those keys, the synced/<shard> marker and its
// JSON codec, the generation id and the detector of a wiped or replaced etcd,
// and the shard function that partitions services between relay replicas.
//
// It is pure: no I/O, no etcd client. The relay (relay/etcdsink,
// relay/inspect, relay/cmd/relay), the node agent (nodeagent,
// nodeagent/etcdsource) and the scale harness import it; it imports nothing
// of meshrelay's.
package keyspace
