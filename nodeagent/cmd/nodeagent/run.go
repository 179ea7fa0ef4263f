package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/opsserver"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// runAgent opens the datapath, dials etcd, starts the ops server and runs
// the agent until ctx ends.
func runAgent(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	log := cfg.Log.Logger(stderr)
	opts, err := cfg.options()
	if err != nil {
		return err
	}
	opts.Logger = log

	dp, err := openDatapath(cfg, log)
	if err != nil {
		return err
	}
	defer dp.Close()

	client, err := cfg.Etcd.Dial(cfg.Etcd.Endpoints, log)
	if err != nil {
		return err
	}
	defer client.Close()

	reg := opsserver.NewRegistry()
	opts.Registerer = reg
	a, err := nodeagent.New(client, dp, opts)
	if err != nil {
		return err
	}
	return cliconfig.Serve(ctx, log, cfg.MetricsListen, opsserver.Options{Gatherer: reg, Ready: a.Ready, Healthy: a.Healthy}, a.Run,
		"node agent starting", "node agent stopped; the pinned maps keep serving",
		"node", opts.NodeName, "datapath", cfg.Datapath.kind, "cluster", opts.Cluster, "etcd", cfg.Etcd.Endpoints)
}

// openDatapath opens the datapath of --datapath. An unavailable bpf
// datapath falls back to memory, with a warning, unless bpf was asked for
// explicitly. The bpf datapath attaches its programs to --cgroup-path when
// the agent calls Attach.
func openDatapath(cfg *config, log *slog.Logger) (datapath.Datapath, error) {
	if cfg.Datapath.kind == datapathMemory {
		log.Warn("memory datapath: nothing reaches the kernel; sockets are not translated")
		return datapath.NewMemory(datapath.MemoryOptions{Logger: log}), nil
	}
	b, err := openBPF(datapath.BPFOptions{PinPath: cfg.PinPath, Logger: log,
		Programs: datapath.ProgramsOptions{CgroupPath: cfg.CgroupPath}})
	if err != nil {
		if cfg.Datapath.explicit {
			return nil, fmt.Errorf("bpf datapath: %w", err)
		}
		log.Warn("bpf datapath unavailable, using the memory datapath (sockets are not translated); pass --datapath=bpf to make this an error",
			"err", err)
		return datapath.NewMemory(datapath.MemoryOptions{Logger: log}), nil
	}
	return b, nil
}

// openBPF opens the pinned maps of opts.
func openBPF(opts datapath.BPFOptions) (*datapath.BPF, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root (CAP_BPF, CAP_SYS_ADMIN) for BPF maps and bpffs")
	}
	return datapath.OpenBPF(opts)
}
