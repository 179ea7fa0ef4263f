// Package inspect reads meshrelay's etcd values for people: it decodes one
// value (`relay decode`) and assembles a service's spec and endpoint slices
// from etcd (`relay inspect`), printing protojson.
//
// The relay's main (relay decode, relay inspect) and package relay's tests
// import it. It reads etcd through clientv3.KV only.
package inspect
