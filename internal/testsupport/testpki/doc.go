// Package testpki issues test certificates in process (crypto/x509): a CA,
// server certificates for loopback addresses and client certificates with a
// chosen common name (etcd's user under client-certificate auth), written
// as PEM files in a test's temporary directory.
//
// Tests of internal/tlsfiles, internal/etcddial, relay/etcdinit, both mains
// and the end-to-end tests (e2e) import it.
package testpki
