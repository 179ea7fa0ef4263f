// Package tcpproxy forwards a loopback port to a target and can cut every
// connection on demand, or delay everything it forwards: tests use it to
// disconnect a client from etcd (or to put a new etcd behind the same
// address) without touching the client, and to make etcd slow.
//
// Tests of nodeagent/etcdsource, the end-to-end tests (e2e) and the
// reliability suite (e2e/chaos) import it.
package tcpproxy
