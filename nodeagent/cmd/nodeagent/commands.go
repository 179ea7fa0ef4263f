package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := cliconfig.Command(&cobra.Command{
		Use:   "nodeagent",
		Short: "Keep this node's BPF service maps in step with the services it needs",
		Long: `nodeagent watches, in the etcd that meshrelay relays write, only the services
this node needs (--services, --namespaces, and with --on-demand every service
VIP inside --service-cidrs a local socket connects to), and writes their
frontends and backends into pinned BPF maps read by cgroup socket programs,
diffed against what the maps hold, batched and rate-limited.

A restart keeps the pinned maps (and traffic) and writes nothing when etcd is
unchanged; nothing in the maps is removed until the state is known complete.

Every flag can also be set as MESHRELAY_<FLAG> (e.g. MESHRELAY_ETCD_ENDPOINTS)
or as a key of the YAML file named by --config; flags win over the
environment, which wins over the file.`,
		Args: cobra.NoArgs,
	}, func(ctx context.Context, r *cliconfig.Reader, _ []string) error {
		return runAgent(ctx, r, stdout, stderr)
	})
	root.SetOut(stdout)
	root.SetErr(stderr)
	addAgentFlags(root.Flags())
	root.AddCommand(newDumpCommand(stdout, stderr), newUninstallCommand(stdout, stderr))
	return root
}

func addAgentFlags(fs *pflag.FlagSet) {
	cliconfig.AddConfigFlag(fs)
	fs.String("datapath", "bpf", "bpf (pinned kernel maps and cgroup programs) or memory (no kernel; for tests and hosts without eBPF). Without an explicit value, an unavailable bpf falls back to memory with a warning")
	fs.StringSlice("services", nil, "services to load and keep, as namespace/name (comma-separated)")
	fs.StringSlice("namespaces", nil, "namespaces whose every service is loaded and kept (comma-separated)")
	fs.Bool("on-demand", true, "load the service of a VIP inside --service-cidrs when a local socket connects to it")
	fs.StringSlice("service-cidrs", nil, "CIDRs of service VIPs (e.g. the cluster's service CIDR 10.96.0.0/12); empty: nothing is loaded on demand")
	fs.String("node-name", "", "this node's name (default $NODE_NAME, else the host name)")
	cliconfig.AddEtcdFlags(fs, "etcd endpoints (comma-separated), required: outside --service-cidrs (see the README)")
	fs.Int("shards", keyspace.DefaultShards, "number of keyspace shards; must match the relays' --shards")
	fs.String("metrics-listen", "127.0.0.1:9465", "address of /metrics, /healthz, /readyz and /debug/pprof/ (empty disables)")
	fs.String("bpf-pin-path", datapath.DefaultPinPath, "bpffs directory of the pinned maps and program links")
	fs.String("cgroup-path", datapath.DefaultCgroupPath, "cgroup v2 directory the socket programs attach to")
	fs.Duration("idle-timeout", nodeagent.DefaultIdleTimeout, "unload an on-demand service unused this long (0 never unloads)")
	fs.Int("max-services", nodeagent.DefaultMaxServices, "most services loaded; past it the least recently used on-demand service makes room")
	fs.Duration("flush-window", nodeagent.DefaultFlushWindow, "how long changes are coalesced before they are written (0 writes at once)")
	fs.Float64("max-map-ops-per-second", nodeagent.DefaultMaxMapOpsPerSecond, "map entries written per second at most (token bucket)")
	fs.Int("map-ops-burst", nodeagent.DefaultBurst, "token bucket size, and the largest change set written at once (entries)")
	cliconfig.AddLogFlags(fs)
}

// addPinFlags adds the flags of the commands that read or remove the pins.
func addPinFlags(fs *pflag.FlagSet) {
	cliconfig.AddConfigFlag(fs)
	fs.String("datapath", "bpf", "only bpf: the memory datapath lives inside the agent process")
	fs.String("bpf-pin-path", datapath.DefaultPinPath, "bpffs directory of the pinned maps and program links")
	cliconfig.AddLogFlags(fs)
}

func newDumpCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := cliconfig.Command(&cobra.Command{
		Use:   "dump",
		Short: "Print the pinned BPF maps as JSON",
		Long: `dump reads the maps pinned under --bpf-pin-path and prints every frontend
(VIP:port/protocol), its id and slot count, and its backends (address:target
port, id, slots held) as JSON. It reads the kernel's maps, so it works while
an agent runs; the memory datapath lives inside the agent process and cannot
be dumped (see the agent's /metrics instead).`,
		Args: cobra.NoArgs,
	}, func(ctx context.Context, r *cliconfig.Reader, _ []string) error {
		return runDump(ctx, r, stdout, stderr)
	})
	addPinFlags(cmd.Flags())
	return cmd
}

func newUninstallCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := cliconfig.Command(&cobra.Command{
		Use:   "uninstall",
		Short: "Detach the socket programs and remove every pinned map",
		Long: `uninstall unpins the programs' links under --bpf-pin-path (which detaches
them: sockets are no longer translated) and removes every pinned map. Run it
with the agent stopped.`,
		Args: cobra.NoArgs,
	}, func(_ context.Context, r *cliconfig.Reader, _ []string) error {
		return runUninstall(r, stdout, stderr)
	})
	addPinFlags(cmd.Flags())
	return cmd
}
