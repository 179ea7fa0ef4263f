// Package etcdinit prepares the relays' etcd for authentication (the
// `relay etcd-init` command of docs/contract.md): role meshrelay-relay
// reads and writes the meshrelay keyspace (/meshrelay/v1/), role
// meshrelay-agent only reads it, users of the same names hold them, user
// root holds role root, and auth is enabled. It is idempotent: a run
// against an etcd already in that state changes nothing, and runs that
// race each other (one per etcd member) all succeed. With client
// certificate auth, etcd's user is the certificate's common name, so the
// relay's and the agent's certificates carry the user names as CN.
//
// It also lists the members' client URLs, which the command publishes in
// a ConfigMap for the node agents (docs/operations.md).
//
// The relay's main imports it; it imports internal/keyspace.
package etcdinit
