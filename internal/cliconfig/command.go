package cliconfig

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meshrelay/meshrelay/internal/opsserver"
)

// Main executes root until SIGINT or SIGTERM, prints a failure as one line
// "<name>: <error>" and exits with ExitCode.
func Main(name string, root *cobra.Command) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	}
	os.Exit(ExitCode(err))
}

// Serve starts the ops server (opsserver.StartOrNone) on --metrics-listen
// address listen with ops's Gatherer and Ready, logs starting with args,
// runs run until it returns and stops the ops server. The end of ctx is a
// clean stop: stopped is logged and Serve returns nil. A listen address that
// cannot be served is a usage error of --metrics-listen.
func Serve(ctx context.Context, log *slog.Logger, listen string, ops opsserver.Options, run func(context.Context) error,
	starting, stopped string, args ...any) error {
	ops.Listen, ops.Logger = listen, log
	stopOps, err := opsserver.StartOrNone(ops)
	if err != nil {
		return Invalid("metrics-listen", listen, err.Error())
	}
	defer stopOps()
	log.Info(starting, args...)
	err = run(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		log.Info(stopped)
		return nil
	}
	return err
}
