// Package etcdsource is the node agent's view of the meshrelay etcd keyspace
// (docs/contract.md): it watches only the services the node needs and hands
// complete, consistent per-service states to the rest of the agent, which
// diffs them against the BPF maps. It is the agent's only access to etcd:
// besides the service watches it lists and follows namespaces
// (RunNamespace), resolves VIPs (Resolve) and answers the start-up
// questions (Complete: is every shard synced in the current generation;
// HasSpec). Its counters are Prometheus collectors (Register), read back
// by Stats.
//
// Only package nodeagent imports it (and its tests). It imports
// internal/keyspace, internal/model, internal/backoff and the value
// schema, never the relay.
//
// # What it reads
//
// One etcd watch per watched service on services/<ns>/<name>/ (trailing
// slash), one on generation and one on the synced/ prefix, plus, for
// Resolve, one range read of the vips/ keys of an IPv4 /24 (or one Get of
// an IPv6 vips/<ip>), whose answer is cached for Options.NegativeTTL, under
// an in-flight bound and a global read rate limit. RunNamespace adds a keys-only list and a watch of
// services/<ns>/ per loaded namespace; HasSpec a count-only read of one
// spec key. Nothing else under services/ is ever read. All watches share
// one etcd watch stream of the one connection: the Source's own
// (stream.go), whose receiving goroutine hands each response to its watch
// (and applies those of service watches itself, WatchFunc) when the client
// is a *clientv3.Client; otherwise the
// client's Watcher, with contexts that carry the same gRPC metadata.
//
// Each watched service is listed at a revision (one read-only Txn that also
// reads generation and the service's synced/<shard> marker) and then watched
// from that revision + 1. The first lists of services that start watching
// together (an agent's declared services at start) are one Txn per 63
// services, each service's part exactly what its own list reads. A broken
// stream is opened again and its watches resume after their last event (as
// clientv3 does); events at
// or below the revision already applied are ignored. A watch that fails with
// ErrCompacted, or that must be re-checked, is replaced by a new list, whose
// result replaces everything held for the service (mark and sweep).
//
// # What it emits
//
// A service is emitted only when it is complete: its spec and the slices
// 0..endpoint_slices-1 are all present. An incomplete service is held (the
// consumer keeps what it had). A removal (Event.State == nil) is emitted only
// when a list shows the spec absent while the service's shard carries a
// synced/<shard> marker of the current generation; before that the removal
// is deferred, and re-checked when such a marker appears. A changed
// generation, or an etcd whose revision went backwards (etcd was wiped and
// rebuilt), re-lists every watched service and namespace; the datapath is
// never flushed. After a revision gone backwards (etcd restored from an
// older copy) the restored markers confirm no removal (docs/contract.md,
// "Generation and wiped etcd"). The generation is probed when the client's
// connection comes back (reconnect.go), when the watch stream is opened
// again (stream.go) and every ProbeInterval (jittered); the
// revisions of every list and watch response keep the highest revision
// seen fresh between probes.
// Identical content (same content hashes at a new revision) emits nothing.
//
// Events are consumer-driven and latest-wins per service: Next returns the
// pending events (waiting for one), Take returns them without waiting to a
// consumer that waits on Ready in a loop of its own (the agent's main
// loop), and a service that changes again before it is taken has its
// pending event replaced. Memory is bounded by the number of watched
// services, however slow the consumer.
//
// # Reaching etcd without the VIPs it translates
//
// The agent is what makes service VIPs work on its node, so its own etcd
// connection must not depend on them: --etcd-endpoints are addresses outside
// --service-cidrs (the etcd or etcd gRPC proxy pods' host-network IPs, a
// hostPort or NodePort on the node's own IP, or a name resolving to those),
// and the agent runs in the host network namespace. The datapath only
// rewrites connects to addresses present in its service maps, so the agent's
// sockets are never translated whichever cgroup they are in, and the agent
// can reach etcd before its first sync and while its maps are empty. This
// package takes an already dialled client (see internal/etcddial).
package etcdsource
