// Package keyspace is meshrelay's etcd contract (docs/contract.md): every key
// name (authorization policy keys included), the strict parsing of those keys, the synced/<shard> marker and its
// JSON codec, the generation id and the detector of a wiped or replaced etcd,
// and the shard function that partitions services between relay replicas.
//
// It is pure: no I/O, no etcd client. Both sides import it: the relay
// (relay, relay/etcdsink, relay/inspect, relay/translate,
// relay/translate/workload, relay/cmd/relay), the node agent (nodeagent,
// nodeagent/etcdsource, nodeagent/nodemodel, nodeagent/cmd/nodeagent), and
// internal/model, internal/cliconfig, the demo and the scale harness. It
// imports nothing of meshrelay's.
package keyspace
