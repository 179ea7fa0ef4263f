// Package e2e holds the node agent's end-to-end tests: the Istiod simulator
// feeds a real relay, which writes a real embedded etcd, which node agents
// read into their datapaths (memory, and bpf when the tests run as root).
// Expected datapath contents are computed from the simulator's truth,
// independently of the relay's translation and the agent's model.
//
// The package has no code besides this file: it exists so that these tests
// can import both the relay and the node agent, which must not import each
// other (it sits outside both trees, so internal/archtest needs no exception
// for it).
package e2e
