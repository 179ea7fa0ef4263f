// Command relay runs the meshrelay relay: Istiod xDS in, per-service etcd
// keys out. docs/contract.md lists its flags and the etcd keyspace.
package main

import (
	"os"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
)

func main() {
	cliconfig.Main("relay", newRootCommand(os.Stdin, os.Stdout, os.Stderr))
}
