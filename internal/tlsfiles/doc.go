// Package tlsfiles builds TLS client credentials from PEM files (a CA
// bundle, a client certificate and its key) that are read again for every
// new connection, so certificates replaced on disk (a rotated Kubernetes
// Secret) are used without a restart; docs/operations.md describes the
// rotation. A file that fails to load or parse keeps the last good
// material in use.
//
// internal/etcddial (the etcd client of both binaries) and the relay's main
// (its Istiod connection) import it. It imports nothing of meshrelay's.
package tlsfiles
