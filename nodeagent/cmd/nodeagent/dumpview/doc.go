// Package dumpview is the JSON presentation of a datapath state that
// `nodeagent dump` prints: frontends as VIP:port/protocol with their
// backends and slots, map sizes, and inconsistencies found.
//
// The nodeagent command imports it, and the demo (scale-tests/demo), which
// prints the same. It imports nodeagent/datapath and nodeagent/nodemodel.
package dumpview
