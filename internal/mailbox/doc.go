// Package mailbox is a non-blocking hand-over between two goroutines that
// keeps only the latest value per key: a newer value replaces one not yet
// taken, and keys are taken in the order they were first put.
//
// relay/xds/reconnect imports it for the requests an upstream xDS client
// has not sent yet, and internal/testsupport/istiodsim for the requests a
// simulated stream has not handled yet; in both, only the newest request of a type matters
// (ARCHITECTURE.md, "Data flow of one change").
package mailbox
