// Package tcpproxy forwards a loopback port to a target and can cut every
// connection on demand: tests use it to disconnect a client from etcd (or
// to put a new etcd behind the same address) without touching the client.
//
// Tests of nodeagent/etcdsource and the end-to-end tests (e2e) import it.
package tcpproxy
