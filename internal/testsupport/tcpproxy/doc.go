// Package tcpproxy forwards a loopback port to a target and can cut every
// connection on demand: tests use it to disconnect a client from etcd (or
// to put a new etcd behind the same address) without touching the client.
//
// Tests of the node agent import it.
package tcpproxy
