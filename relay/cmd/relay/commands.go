package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/keyspace"
)

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	cfg := &config{}
	root := cliconfig.Bound(&cobra.Command{
		Use:   "relay",
		Short: "Relay Istiod's xDS into per-service etcd keys",
		Long: `relay connects to Istiod as an xDS client, translates its pushes into one
ServiceSpec and EndpointSlices per service, and writes them into etcd under
/meshrelay/v1/<cluster>/, deduplicated by content and coalesced in time.

With no --etcd-endpoints it starts an embedded, in-memory etcd on loopback.
` + cliconfig.SourcesHelp,
		Args: cobra.NoArgs,
	}, cfg, func(ctx context.Context, _ []string) error {
		return runRelay(ctx, cfg, stdout, stderr)
	})
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newDecodeCommand(stdin, stdout), newInspectCommand(stdout), newEtcdInitCommand(stderr), newStatusCommand(stdout))
	return root
}

func newDecodeCommand(stdin io.Reader, stdout io.Writer) *cobra.Command {
	cfg := &decodeConfig{}
	return cliconfig.Bound(&cobra.Command{
		Use:   "decode",
		Short: "Decode one etcd value from stdin and print it as JSON",
		Long: `decode reads one value, as printed by
  etcdctl get KEY --print-value-only
on standard input and prints it as JSON. --key says which kind of value it is;
without it both ServiceSpec and EndpointSlice are tried.`,
		Args: cobra.NoArgs,
	}, cfg, func(context.Context, []string) error {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
		if len(b) == 0 {
			return &cliconfig.UsageError{Msg: "decode: no value on stdin"}
		}
		return decode(b, cfg.Key, stdout)
	})
}

func newInspectCommand(stdout io.Writer) *cobra.Command {
	cfg := &inspectConfig{}
	return cliconfig.Bound(&cobra.Command{
		Use:   "inspect [namespace/name]",
		Short: "Print a service's spec and endpoints (or every service) from etcd as JSON",
		Args:  cobra.MaximumNArgs(1),
	}, cfg, func(ctx context.Context, args []string) error {
		var svc *keyspace.Service
		if len(args) == 1 {
			s, err := keyspace.ParseService(args[0])
			if err != nil {
				return &cliconfig.UsageError{Msg: "inspect: " + err.Error()}
			}
			svc = &s
		}
		return runInspect(ctx, cfg, svc, stdout)
	})
}

func newStatusCommand(stdout io.Writer) *cobra.Command {
	cfg := &statusConfig{}
	return cliconfig.Bound(&cobra.Command{
		Use:   "status",
		Short: "Print the relay replicas, every shard's leader and synced marker from etcd as JSON",
		Args:  cobra.NoArgs,
	}, cfg, func(ctx context.Context, _ []string) error {
		return runStatus(ctx, cfg, stdout)
	})
}
