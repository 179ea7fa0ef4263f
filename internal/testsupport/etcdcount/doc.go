// Package etcdcount wraps an etcd client and records every key and prefix
// it reads or watches, so tests can assert that a node agent never touched
// what it does not need.
//
// Tests of nodeagent/etcdsource and the end-to-end tests (e2e) import it; it
// has no other user.
package etcdcount
