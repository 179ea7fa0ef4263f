// Package promvalue reads the current value of Prometheus collectors, so
// that a library whose metrics live only in its collectors can still offer a
// typed Stats snapshot to callers and tests.
//
// Counter and Gauge are metrics their owner reads without allocating.
//
// relay/etcdsink, relay/xds/reconnect (the xDS clients' metrics),
// nodeagent and nodeagent/etcdsource import it.
package promvalue
