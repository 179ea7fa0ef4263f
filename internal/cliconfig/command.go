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

	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/keyspace"
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

// AddConfigFlag adds --config.
func AddConfigFlag(fs *pflag.FlagSet) {
	fs.String(ConfigFlag, "", "YAML file of flag values (keys are flag names)")
}

// AddLogFlags adds --log-level and --log-format, read by Reader.Logger.
func AddLogFlags(fs *pflag.FlagSet) {
	fs.String("log-level", "info", "debug, info, warn or error")
	fs.String("log-format", "text", "text or json")
}

// AddEtcdFlags adds --cluster, --etcd-endpoints and the etcd TLS flags.
func AddEtcdFlags(fs *pflag.FlagSet, endpointsHelp string) {
	fs.String("cluster", keyspace.DefaultCluster, "cluster id: keys live under /meshrelay/v1/<cluster>/")
	fs.StringSlice("etcd-endpoints", nil, endpointsHelp)
	fs.String("etcd-ca", "", "etcd TLS: CA file")
	fs.String("etcd-cert", "", "etcd TLS: client certificate file")
	fs.String("etcd-key", "", "etcd TLS: client key file")
}

// EtcdDial opens an etcd client for endpoints with the TLS files of
// AddEtcdFlags (--etcd-ca, --etcd-cert, --etcd-key).
func (r *Reader) EtcdDial(endpoints []string, log *slog.Logger) (*clientv3.Client, error) {
	return etcddial.Dial(etcddial.Options{
		Endpoints: endpoints,
		CAFile:    r.String("etcd-ca"), CertFile: r.String("etcd-cert"), KeyFile: r.String("etcd-key"),
		Logger: log,
	})
}
