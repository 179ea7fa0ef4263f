// Package promvalue reads the current value of Prometheus collectors, so
// that a library whose metrics live only in its collectors can still offer a
// typed Stats snapshot to callers and tests.
//
// relay/etcdsink and relay/xds/reconnect (the xDS clients' metrics) import it.
package promvalue
