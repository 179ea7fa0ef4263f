// Package shard splits the keyspace's shards between relay replicas
// (docs/contract.md, "Relay replicas and shard leadership").
//
// Every replica registers relays/<relay-id> on its own lease, a JSON
// Member. Every shard has one leader, elected with etcd's
// concurrency.Election under shards/<shard>/, the value of the election key
// being the leader's relay id. A Membership balances the shards between
// the members that are ready (their upstream is healthy and synced): each
// holds at most ⌈shards/ready members⌉, takes vacant shards, and gives a
// shard up only to a replica already queued behind it in that shard's
// election (an agreed hand-off), so a join or a leave never makes shards
// flap.
//
// A Leader is one term of leadership of one shard. Its Fence is the
// comparison every write of that shard carries (the create revision of
// the election key): a paused or partitioned former leader's writes fail
// in etcd instead of overwriting its successor's. Membership implements
// etcdsink.Fencer; Deposed is how the writer reports a refused write, and
// the shard is dropped at once.
//
// Status reads the member list and the shard leaders from etcd for
// `relay status`.
//
// Package relay and the relay's main import it; it imports
// internal/keyspace, internal/backoff and etcd's client.
package shard
