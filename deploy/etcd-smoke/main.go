// Command etcd-smoke is etcd's own server main, built from the etcd version
// the main module uses, so `make chart-etcd-test` can run the chart's etcd
// command line on loopback without an etcd package on the machine.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
