// Package model is the service model meshrelay stores in etcd: one
// ServiceSpec plus its EndpointSlices per service (docs/contract.md), and the
// content hashing that decides whether a value changed.
//
// It is pure (no I/O). The relay's translator produces model.Service values,
// the relay's writer stores them, and the node agent decodes them. It imports
// only the generated proto package and keyspace.
package model
