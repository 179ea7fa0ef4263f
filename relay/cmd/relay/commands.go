package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/keyspace"
)

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := cliconfig.Command(&cobra.Command{
		Use:   "relay",
		Short: "Relay Istiod's xDS into per-service etcd keys",
		Long: `relay connects to Istiod as an xDS client, translates its pushes into one
ServiceSpec and EndpointSlices per service, and writes them into etcd under
/meshrelay/v1/<cluster>/, deduplicated by content and coalesced in time.

With no --etcd-endpoints it starts an embedded, in-memory etcd on loopback.
Every flag can also be set as MESHRELAY_<FLAG> (e.g. MESHRELAY_ETCD_ENDPOINTS)
or as a key of the YAML file named by --config; flags win over the
environment, which wins over the file.`,
		Args: cobra.NoArgs,
	}, func(ctx context.Context, r *cliconfig.Reader, _ []string) error {
		return runRelay(ctx, r, stdout, stderr)
	})
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	addRelayFlags(root.Flags())
	root.AddCommand(newDecodeCommand(stdin, stdout), newInspectCommand(stdout))
	return root
}

func addCommonFlags(fs *pflag.FlagSet) {
	cliconfig.AddConfigFlag(fs)
	cliconfig.AddEtcdFlags(fs, "etcd endpoints (comma-separated); empty starts an embedded in-memory etcd")
	cliconfig.AddLogFlags(fs)
}

func addRelayFlags(fs *pflag.FlagSet) {
	addCommonFlags(fs)
	fs.String("istiod", "127.0.0.1:15010", "Istiod xDS address (host:port); 15010 is plaintext, 15012 needs --istiod-ca")
	fs.String("mode", "sotw", "upstream API: sotw (CDS/EDS/LDS/RDS); workload (ambient, delta) is not available yet")
	fs.Int("shards", keyspace.DefaultShards, "number of keyspace shards")
	fs.String("metrics-listen", "127.0.0.1:9464", "address of /metrics, /healthz, /readyz and /debug/pprof/ (empty disables)")
	fs.String("relay-id", "", "this replica's id in synced/ markers (default $POD_NAME, else the host name)")
	fs.String("node-id", "", "xDS node id (default sidecar~$POD_IP~$POD_NAME.$POD_NAMESPACE~$POD_NAMESPACE.svc.cluster.local)")
	fs.StringToString("node-metadata", nil, "extra xDS node metadata, key=value,... (e.g. ISTIO_VERSION=1.28.0)")
	fs.String("istiod-ca", "", "Istiod TLS: CA file (enables TLS)")
	fs.String("istiod-cert", "", "Istiod TLS: client certificate file")
	fs.String("istiod-key", "", "Istiod TLS: client key file")
	fs.String("istiod-server-name", "", "Istiod TLS: server name to verify (default: the host of --istiod)")
	fs.Duration("sync-timeout", 5*time.Second, "how long to wait for named EDS/RDS resources before the upstream state counts as complete")
	fs.Int("max-recv-msg-size", 256<<20, "largest xDS message accepted from Istiod, bytes")
	fs.Duration("coalesce-window", 100*time.Millisecond, "quiet time that ends a burst of changes before it is written")
	fs.Duration("coalesce-max-delay", time.Second, "longest a change waits in a burst before it is written")
	fs.Float64("etcd-ops-per-second", 5000, "etcd write rate limit after the first complete sync (operations/s)")
	fs.Float64("etcd-bootstrap-ops-per-second", 200000, "etcd write rate limit until the first complete sync (operations/s)")
	fs.String("etcd-listen", "127.0.0.1:0", "embedded etcd only: client address (loopback; port 0 picks a free one)")
	fs.String("etcd-data-dir", "", "embedded etcd only: data directory (default a temporary in-memory directory)")
}

func newDecodeCommand(stdin io.Reader, stdout io.Writer) *cobra.Command {
	cmd := cliconfig.Command(&cobra.Command{
		Use:   "decode",
		Short: "Decode one etcd value from stdin and print it as JSON",
		Long: `decode reads one value, as printed by
  etcdctl get KEY --print-value-only
on standard input and prints it as JSON. --key says which kind of value it is;
without it both ServiceSpec and EndpointSlice are tried.`,
		Args: cobra.NoArgs,
	}, func(_ context.Context, r *cliconfig.Reader, _ []string) error {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
		if len(b) == 0 {
			return &cliconfig.UsageError{Msg: "decode: no value on stdin"}
		}
		return decode(b, r.String("key"), stdout)
	})
	cliconfig.AddConfigFlag(cmd.Flags())
	cmd.Flags().String("key", "", "the etcd key the value was read from (decides spec vs slice)")
	return cmd
}

func newInspectCommand(stdout io.Writer) *cobra.Command {
	cmd := cliconfig.Command(&cobra.Command{
		Use:   "inspect [namespace/name]",
		Short: "Print a service's spec and endpoints (or every service) from etcd as JSON",
		Args:  cobra.MaximumNArgs(1),
	}, func(ctx context.Context, r *cliconfig.Reader, args []string) error {
		var svc *keyspace.Service
		if len(args) == 1 {
			s, err := keyspace.ParseService(args[0])
			if err != nil {
				return &cliconfig.UsageError{Msg: "inspect: " + err.Error()}
			}
			svc = &s
		}
		if len(r.Strings("etcd-endpoints")) == 0 {
			return &cliconfig.UsageError{Msg: "inspect: --etcd-endpoints is required (the relay prints it at start)"}
		}
		return runInspect(ctx, r, svc, stdout)
	})
	addCommonFlags(cmd.Flags())
	return cmd
}
