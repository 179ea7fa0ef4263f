// Package etcdsink writes the relay's desired state into etcd, in the
// keyspace of docs/contract.md (declared in internal/keyspace).
//
// The relay calls Set for every translated service that changed and Complete
// whenever upstream state is complete (after the first full push and after
// every resync). The Sink keeps the latest desired model.Service of every
// service in memory: that map is the source of truth, and etcd is a cache
// the Sink can rebuild from it at any time.
//
// Run is the single writer. It loads what etcd already holds (so a restart
// against unchanged config writes nothing), then loops: take the coalesced
// dirty services, compare each with what was written by content hash, and
// write only the values that changed, every service's changes in one
// transaction, several services packed per transaction, paced by a token
// bucket. A failed transaction leaves its services dirty; they are retried
// after a jittered exponential backoff with whatever is desired by then.
//
// Every transaction is guarded by the etcd generation id (and by
// Options.Fence when set). When keyspace.Incarnation says etcd was wiped or
// rebuilt - the generation vanished or changed, or etcd's revision went
// backwards - the Sink reloads and rewrites the whole desired state.
//
// Size: a service whose change fits one transaction (MaxTxnOps, 128 by
// default, and MaxTxnBytes, 1 MiB) is written in one. A larger one is
// staged (staged.go): its slices under a new slice generation in as many
// transactions as needed, then the spec naming that generation in one, then
// the deletes of the old slices, so a watcher never sees a mix. A service
// etcd refuses even so is reported (Stats.Oversized, Unwritable).
//
// Authorization policies (authorization.go, SetAuthorizations and
// CompleteAuthorizations; workload mode) are stored beside the services under
// authorizations/<namespace>/<name> through the same queue, dedupe by content
// hash, generation guard, shard fence, stray sweep and a mass-deletion guard
// of their own.
//
// Safety: removals of more than Options.MaxDeleteFraction of the services
// in etcd are held (guard.go, docs/contract.md "Held deletions"); keys that
// are not canonical are deleted with the sweep (stray.go); Stalled reports a
// writer without progress while work is pending (the relay's /healthz).
//
// Package relay creates the Sink; the relay's main, the scale harness and
// the end-to-end tests (e2e) import this package for its Options
// and Stats. It imports internal/keyspace, internal/model, relay/coalesce,
// internal/backoff and internal/promvalue.
package etcdsink
