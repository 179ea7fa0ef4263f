// Command etcd-smoke is etcd's own server and etcdctl mains, built from the
// etcd version the main module uses, so `make chart-etcd-test` can run the
// chart's etcd start script on loopback without etcd packages installed.
// Called as etcdctl (a link of that name) it is etcdctl; otherwise etcd.
package main

import (
	"os"
	"path/filepath"

	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	if filepath.Base(os.Args[0]) == "etcdctl" {
		ctlv3.MustStart()
		return
	}
	etcdmain.Main(os.Args)
}
