// Command demo runs meshrelay end to end on loopback: an embedded etcd, the
// Istiod simulator with a few hundred services, the relay and a node agent
// that declares five services. It shows progress, prints the etcdctl and
// `relay inspect` commands that show the result and the agent's datapath,
// and pushes a change now and then, until Ctrl-C or DEMO_SECONDS.
//
// As root (bpf datapath) it also starts TCP backends on the endpoints'
// loopback addresses, attaches the programs to a demo cgroup, connects to
// service VIPs from inside it and prints which backend answered.
//
// Run it with `make demo` (or `go run ./demo`; DEMO_SECONDS=N stops it
// after N seconds). This is a main package; nothing imports it. It imports
// the relay and node agent libraries, the Istiod simulator, embedded etcd
// and the cgroup client.
package main
