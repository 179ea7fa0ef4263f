// Package keyspace names every etcd key meshrelay reads or writes (BRIEF §2.1)
// and the shard function that partitions services between relay replicas.
//
// It is pure: no I/O, no etcd client. Both the relay and the node agent import
// it; it imports nothing of meshrelay's.
package keyspace
