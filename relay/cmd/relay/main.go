// Command relay runs the meshrelay relay: Istiod xDS in, per-service etcd
// keys out. See the README for flags and the etcd keyspace.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil && err != context.Canceled {
		fmt.Fprintln(os.Stderr, "relay:", err)
	}
	if err == context.Canceled {
		err = nil
	}
	os.Exit(cliconfig.ExitCode(err))
}
