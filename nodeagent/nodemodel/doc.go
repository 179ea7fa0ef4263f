// Package nodemodel is the node agent's pure model of its datapath: what the
// maps of one node should hold for the services it loads, and the
// difference to what they hold.
//
//   - Translate turns one model.Service (spec and endpoint slices, as
//     etcdsource delivers it) into the node's frontends: one per VIP ×
//     service port × protocol, each with its backends (endpoint address and
//     target port) and weights.
//   - IDs hands out frontend ids (one per frontend key) and backend ids (one
//     per address and target port, shared by frontends and reference
//     counted). It can be rebuilt from a dumped datapath.State, so a
//     restarted agent keeps the ids the kernel already holds, and it
//     recycles an id only after the Apply that removed it.
//   - Table keeps the state the datapath holds (Applied) and the state it
//     should hold (Want), records which keys a change touched and returns
//     only their difference as a datapath.ChangeSet: an unchanged service
//     costs nothing, a one-endpoint change a handful of entries.
//
// The package is deterministic and does no I/O: no goroutines, clocks,
// logging or locks. A Table belongs to one goroutine.
//
// The node agent (package nodeagent), the dump view of its command
// (nodeagent/cmd/nodeagent/dumpview, for CompareKeys) and the scale
// harness's direct-mode nodes import it. It imports internal/keyspace,
// internal/model, the value schema and nodeagent/datapath (for its types
// and AssignSlots, never its kernel I/O).
package nodemodel
