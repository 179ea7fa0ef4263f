// Command nodeagent runs the meshrelay node agent: it watches the services
// its node needs in etcd and keeps the node's BPF maps in step. See the
// README for flags; `nodeagent dump` prints the pinned maps and
// `nodeagent uninstall` removes the programs and maps.
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
	err := newRootCommand(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil && err != context.Canceled {
		fmt.Fprintln(os.Stderr, "nodeagent:", err)
	}
	if err == context.Canceled {
		err = nil
	}
	os.Exit(cliconfig.ExitCode(err))
}
