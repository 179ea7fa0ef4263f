// Command nodeagent runs the meshrelay node agent: it watches the services
// its node needs in etcd and keeps the node's BPF maps in step. See the
// README for flags; `nodeagent dump` prints the pinned maps and
// `nodeagent uninstall` removes the programs and maps.
package main

import (
	"os"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
)

func main() {
	cliconfig.Main("nodeagent", newRootCommand(os.Stdout, os.Stderr))
}
