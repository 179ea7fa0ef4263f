package roles

import "github.com/meshrelay/meshrelay/scale-tests/internal/launch"

// Roles a child process can play (--role). The harness binary re-executes
// itself once per component, so that /proc attributes CPU and memory to
// each component.
const (
	Sim         = "sim"
	Etcd        = "etcd"
	Relay       = "relay"
	RelayNodes  = "relay-nodes"
	DirectNodes = "direct-nodes"
)

var funcs = map[string]launch.RoleFunc{
	Sim:         runSimRole,
	Etcd:        runEtcdRole,
	Relay:       runRelayRole,
	RelayNodes:  runRelayNodesRole,
	DirectNodes: runDirectNodesRole,
}

// Lookup returns the function that plays role.
func Lookup(role string) (launch.RoleFunc, bool) {
	f, ok := funcs[role]
	return f, ok
}
