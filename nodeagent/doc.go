// Package nodeagent is the meshrelay node agent as a library: it loads the
// services its node needs from etcd (nodeagent/etcdsource), turns them into
// the node's map entries (nodeagent/nodemodel) and writes only what changed
// into the datapath (nodeagent/datapath), paced by a token bucket.
//
// Agent orchestrates three parts, its goroutines under one errgroup (an
// error of any, such as a failing source, ends Run with that error):
//
//   - the etcd source, its only access to etcd (this package imports no
//     etcd package);
//   - the load set (loadset.go): which services to load and why, the cap
//     and idle eviction; a pure type with an injected clock;
//   - the writer (writer.go): change sets paced by token buckets, deferred
//     deletes of unreferenced entries, retries over a fresh dump.
//
// # Which services
//
// A node loads the services of Options.Services, every service of
// Options.Namespaces (listed at start with one keys-only read of
// services/<ns>/ and followed with one watch of that prefix, whose events
// carry the values of every service of the namespace: its cost is that of
// watching the whole namespace), and, with Options.OnDemand, the service of
// any VIP inside Options.ServiceCIDRs a socket connects to (ReportMiss:
// one read of vips/<ip>, then one watch of the service). On-demand services
// idle for Options.IdleTimeout are unloaded; at most Options.MaxServices
// are loaded, the least recently used on-demand one making room for a new
// one. No other service is read.
//
// # Writing the datapath
//
// A change that arrives after quiet is flushed at once; the changes that
// follow within Options.FlushWindow are coalesced and flushed at the
// window's end (latest state wins per service; the queue holds at most one
// entry per service however fast etcd changes). A flush is written as one
// datapath.ChangeSet, or one per chunk of about Options.Burst entries. A token bucket limits the entries
// written per second and another the change sets applied per second. An
// unchanged service writes nothing; a one-endpoint change a handful of
// entries. Ids and slot tables are kept stable (nodemodel.Table).
//
// # Nothing is deleted before the state is known
//
// At start the agent dumps the datapath and keeps every entry in it. A
// service's entries are removed only on an explicit removal from the
// source (which waits for a synced marker of the current generation),
// on eviction, or by the orphan sweep. Orphans are dumped frontends no
// loaded service claims (a service deleted, or dropped from Options.
// Services, while the agent was down). The sweep runs once, after every
// declared service has been delivered once (a declared service absent from
// a completely synced etcd counts as delivered) and, with on-demand
// loading, after each orphan VIP was resolved once against a completely
// synced etcd (every shard's marker of the current generation) and the
// services found were loaded again. A restart against unchanged etcd
// writes nothing.
//
// Ready reports readiness (for /readyz) once every declared service has
// been delivered and applied (the first complete reconcile) and the
// datapath's programs are attached (Datapath.Attach: the bpf datapath
// installs its socket programs, whose misses feed ReportMiss; nothing on
// the memory datapath).
//
// The agent's figures are Prometheus collectors, one set per agent,
// registered with Options.Registerer; Stats reads them back.
//
// Many agents can run in one process (the scale harness runs hundreds
// with the memory datapath): an Agent has no globals and shares only its
// etcd client.
//
// The node agent's command (nodeagent/cmd/nodeagent), the scale harness
// (scale-tests and its demo) and the end-to-end tests import this package.
// It never imports the relay.
package nodeagent
