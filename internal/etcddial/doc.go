// Package etcddial opens an etcd client from the flags both binaries share
// (--etcd-endpoints and the --etcd-ca/--etcd-cert/--etcd-key TLS files).
//
// The client dials the endpoints as given. The node agent must be given
// endpoints that do not depend on the service VIPs it translates itself
// (node IPs, host-network etcd or proxy addresses): see nodeagent's docs.
//
// internal/cliconfig (and through it the relay's and the node agent's
// mains), internal/embedetcd, the demo and the scale harness import it.
package etcddial
