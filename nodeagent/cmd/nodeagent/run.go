package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/opsserver"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// runAgent reads the configuration, opens the datapath, dials etcd, starts
// the ops server and runs the agent until ctx ends.
func runAgent(ctx context.Context, r *cliconfig.Reader, stdout, stderr io.Writer) error {
	log := r.Logger(stderr)
	opts, err := agentOptions(r)
	if err != nil {
		return err
	}
	kind := r.OneOf("datapath", "bpf", "memory")
	endpoints := r.Strings("etcd-endpoints")
	if len(endpoints) == 0 {
		r.Fail("etcd-endpoints", "", "required: the node agent reads the relays' etcd (it never starts one)")
	}
	if err := r.Err(); err != nil {
		return err
	}
	opts.Logger = log

	dp, err := openDatapath(kind, r.Explicit("datapath"), r, log)
	if err != nil {
		return err
	}
	defer dp.Close()

	client, err := r.EtcdDial(endpoints, log)
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
	stopOps, err := opsserver.StartOrNone(opsserver.Options{Listen: r.String("metrics-listen"), Gatherer: reg, Ready: a.Ready, Logger: log})
	if err != nil {
		return cliconfig.Invalid("metrics-listen", r.String("metrics-listen"), err.Error())
	}
	defer stopOps()
	log.Info("node agent starting", "node", opts.NodeName, "datapath", kind, "cluster", opts.Cluster, "etcd", endpoints)
	err = a.Run(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		log.Info("node agent stopped; the pinned maps keep serving")
		return nil
	}
	return err
}

// agentOptions reads and checks every agent setting but the datapath and
// etcd; bad values are recorded in r.
func agentOptions(r *cliconfig.Reader) (nodeagent.Options, error) {
	opts := nodeagent.Options{
		Cluster:            r.String("cluster"),
		Shards:             r.Int("shards"),
		NodeName:           r.String("node-name"),
		Namespaces:         r.Strings("namespaces"),
		OnDemand:           r.Bool("on-demand"),
		IdleTimeout:        r.Duration("idle-timeout"),
		MaxServices:        r.Int("max-services"),
		FlushWindow:        r.Duration("flush-window"),
		MaxMapOpsPerSecond: r.Float("max-map-ops-per-second"),
		Burst:              r.Int("map-ops-burst"),
	}
	for _, s := range r.Strings("services") {
		svc, err := keyspace.ParseService(s)
		if err != nil {
			r.Fail("services", s, "want namespace/name")
			continue
		}
		opts.Services = append(opts.Services, svc)
	}
	for _, ns := range opts.Namespaces {
		if strings.Contains(ns, "/") {
			r.Fail("namespaces", ns, "want a namespace name without '/'")
		}
	}
	for _, s := range r.Strings("service-cidrs") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			r.Fail("service-cidrs", s, "want a CIDR such as 10.96.0.0/12")
			continue
		}
		opts.ServiceCIDRs = append(opts.ServiceCIDRs, p.Masked())
	}
	if opts.Cluster == "" || strings.Contains(opts.Cluster, "/") {
		r.Fail("cluster", opts.Cluster, "want a non-empty id without '/'")
	}
	if opts.Shards < 1 || opts.Shards > 4096 {
		r.Fail("shards", opts.Shards, "want 1..4096")
	}
	switch {
	case opts.IdleTimeout < 0:
		r.Fail("idle-timeout", opts.IdleTimeout, "want >= 0")
	case opts.IdleTimeout == 0:
		opts.IdleTimeout = -1 // never
	}
	if opts.MaxServices < 1 {
		r.Fail("max-services", opts.MaxServices, "want >= 1")
	}
	switch {
	case opts.FlushWindow < 0:
		r.Fail("flush-window", opts.FlushWindow, "want >= 0")
	case opts.FlushWindow == 0:
		opts.FlushWindow = -1 // at once
	}
	if opts.MaxMapOpsPerSecond <= 0 {
		r.Fail("max-map-ops-per-second", opts.MaxMapOpsPerSecond, "want > 0")
	}
	if opts.Burst < 1 {
		r.Fail("map-ops-burst", opts.Burst, "want >= 1")
	}
	if opts.NodeName == "" {
		opts.NodeName = defaultNodeName()
	}
	return opts, r.Err()
}

// openDatapath opens the datapath of kind. An unavailable bpf datapath
// falls back to memory, with a warning, unless bpf was asked for
// explicitly. The bpf datapath attaches its programs to --cgroup-path when
// the agent calls Attach.
func openDatapath(kind string, explicit bool, r *cliconfig.Reader, log *slog.Logger) (datapath.Datapath, error) {
	if kind == "memory" {
		log.Warn("memory datapath: nothing reaches the kernel; sockets are not translated")
		return datapath.NewMemory(datapath.MemoryOptions{Logger: log}), nil
	}
	b, err := openBPF(datapath.BPFOptions{PinPath: r.String("bpf-pin-path"), Logger: log,
		Programs: datapath.ProgramsOptions{CgroupPath: r.String("cgroup-path")}})
	if err != nil {
		if explicit {
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

func defaultNodeName() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "node"
}
