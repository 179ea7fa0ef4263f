// Package etcddial opens an etcd client from the flags both binaries share
// (docs/contract.md §4): --etcd-endpoints, the --etcd-ca/--etcd-cert/
// --etcd-key TLS files (read again for every new connection through
// internal/tlsfiles, so replaced certificates are used without a restart),
// --etcd-server-name and the etcd user. With TLS, a plaintext endpoint is
// refused, never dialed. FollowEndpointsFile keeps a client's endpoints in
// step with --etcd-endpoints-file.
//
// The client dials the endpoints as given. The node agent must be given
// endpoints that do not depend on the service VIPs it translates itself
// (pod or node IPs, host-network etcd or proxy addresses): see nodeagent's
// docs.
//
// internal/cliconfig (and through it the relay's and the node agent's
// mains), internal/embedetcd, the demo and the scale harness import it. It
// imports internal/tlsfiles.
package etcddial
