package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
)

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	cfg := &config{}
	root := cliconfig.Bound(&cobra.Command{
		Use:   "nodeagent",
		Short: "Keep this node's BPF service maps in step with the services it needs",
		Long: `nodeagent watches, in the etcd that meshrelay relays write, only the services
this node needs (--services, --namespaces, and with --on-demand every service
VIP inside --service-cidrs a local socket connects to), and writes their
frontends and backends into pinned BPF maps read by cgroup socket programs,
diffed against what the maps hold, batched and rate-limited.

A restart keeps the pinned maps (and traffic) and writes nothing when etcd is
unchanged; nothing in the maps is removed until the state is known complete.

` + cliconfig.SourcesHelp,
		Args: cobra.NoArgs,
	}, cfg, func(ctx context.Context, _ []string) error {
		return runAgent(ctx, cfg, stdout, stderr)
	})
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newDumpCommand(stdout, stderr), newUninstallCommand(stdout))
	return root
}

func newDumpCommand(stdout, stderr io.Writer) *cobra.Command {
	cfg := &pinConfig{}
	return cliconfig.Bound(&cobra.Command{
		Use:   "dump",
		Short: "Print the pinned BPF maps as JSON",
		Long: `dump reads the maps pinned under --bpf-pin-path and prints every frontend
(VIP:port/protocol), its id and slot count, and its backends (address:target
port, id, slots held) as JSON. It reads the kernel's maps, so it works while
an agent runs; the memory datapath lives inside the agent process and cannot
be dumped (see the agent's /metrics instead).`,
		Args: cobra.NoArgs,
	}, cfg, func(ctx context.Context, _ []string) error {
		return runDump(ctx, cfg, stdout, stderr)
	})
}

func newUninstallCommand(stdout io.Writer) *cobra.Command {
	cfg := &pinConfig{}
	return cliconfig.Bound(&cobra.Command{
		Use:   "uninstall",
		Short: "Detach the socket programs and remove every pinned map",
		Long: `uninstall unpins the programs' links under --bpf-pin-path (which detaches
them: sockets are no longer translated) and removes every pinned map. Run it
with the agent stopped.`,
		Args: cobra.NoArgs,
	}, cfg, func(context.Context, []string) error {
		return runUninstall(cfg, stdout)
	})
}
