package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/opsserver"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// endpointsFileInterval is how often --etcd-endpoints-file is read again
// (a ConfigMap volume changes within about a minute of the ConfigMap).
const endpointsFileInterval = 5 * time.Second

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

	endpoints := cfg.Etcd.Endpoints
	if cfg.Etcd.EndpointsFile != "" {
		if endpoints, err = cfg.Etcd.FileEndpoints(); err != nil {
			return err
		}
	}
	client, err := cfg.Etcd.Dial(endpoints, log)
	if err != nil {
		return err
	}
	defer client.Close()
	go cfg.Etcd.FollowEndpointsFile(ctx, client, endpoints, endpointsFileInterval, log)

	reg := opsserver.NewRegistry()
	opts.Registerer = reg
	a, err := nodeagent.New(client, dp, opts)
	if err != nil {
		return err
	}
	return cliconfig.Serve(ctx, log, cfg.MetricsListen, opsserver.Options{Pprof: cfg.Pprof, Gatherer: reg, Ready: a.Ready, Healthy: a.Healthy}, a.Run,
		"node agent starting", "node agent stopped; the pinned maps keep serving",
		"node", opts.NodeName, "datapath", cfg.Datapath.kind, "cluster", opts.Cluster, "etcd", endpoints)
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
	if err := checkCapabilities(); err != nil {
		return nil, err
	}
	return datapath.OpenBPF(opts)
}
