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
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Command returns a cobra command whose flag errors are usage errors (exit
// 2) and whose run function gets the loaded configuration: flags, then
// MESHRELAY_* environment, then the --config file. Errors are returned,
// never printed by cobra: Main prints them.
func Command(cmd *cobra.Command, run func(ctx context.Context, r *Reader, args []string) error) *cobra.Command {
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Msg: err.Error()} })
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		r, err := Load(cmd.Flags())
		if err != nil {
			return err
		}
		return run(cmd.Context(), r, args)
	}
	return cmd
}

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

// AddConfigFlag adds --config (ConfigFile, for Reader users).
func AddConfigFlag(fs *pflag.FlagSet) { new(ConfigFile).Bind(fs) }

// AddLogFlags adds --log-level and --log-format (Log), read by Reader.Logger.
func AddLogFlags(fs *pflag.FlagSet) { new(Log).Bind(fs) }

// AddEtcdFlags adds --cluster, --etcd-endpoints and the etcd TLS flags
// (Etcd), read by Reader.EtcdDial.
func AddEtcdFlags(fs *pflag.FlagSet, endpointsHelp string) { new(Etcd).Bind(fs, endpointsHelp) }

// EtcdDial opens an etcd client for endpoints with the TLS files of
// AddEtcdFlags (--etcd-ca, --etcd-cert, --etcd-key).
func (r *Reader) EtcdDial(endpoints []string, log *slog.Logger) (*clientv3.Client, error) {
	e := Etcd{CAFile: r.String("etcd-ca"), CertFile: r.String("etcd-cert"), KeyFile: r.String("etcd-key")}
	return e.Dial(endpoints, log)
}
