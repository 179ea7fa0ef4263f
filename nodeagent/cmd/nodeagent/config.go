package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// config is the agent command's configuration, bound to its flags; the
// environment and the --config file are overlaid onto the flags not set on
// the command line (cliconfig.Overlay). docs/contract.md lists the flags.
type config struct {
	File cliconfig.ConfigFile
	Etcd cliconfig.Etcd
	Log  cliconfig.Log

	Datapath      datapathFlag
	Services      []string
	Namespaces    []string
	OnDemand      bool
	ServiceCIDRs  []string
	NodeName      string
	Shards        int
	MetricsListen string
	PinPath       string
	CgroupPath    string

	IdleTimeout        time.Duration
	MaxServices        int
	FlushWindow        time.Duration
	MaxMapOpsPerSecond float64
	MapOpsBurst        int
	StallTimeout       time.Duration
	Pprof              bool
}

// Datapath kinds (--datapath).
const (
	datapathBPF    = "bpf"
	datapathMemory = "memory"
)

// datapathFlag is --datapath: the kind, and whether it was given (on the
// command line, in the environment or in the file) rather than defaulted;
// only a defaulted bpf falls back to memory.
type datapathFlag struct {
	kind     string
	explicit bool
}

func (d *datapathFlag) String() string { return d.kind }
func (d *datapathFlag) Type() string   { return "string" }
func (d *datapathFlag) Set(s string) error {
	d.kind, d.explicit = s, true
	return nil
}

// Bind adds the agent's flags to fs, bound to c.
func (c *config) Bind(fs *pflag.FlagSet) {
	c.File.Bind(fs)
	c.Datapath = datapathFlag{kind: datapathBPF}
	fs.Var(&c.Datapath, "datapath", "bpf (pinned kernel maps and cgroup programs) or memory (no kernel; for tests and hosts without eBPF). Without an explicit value, an unavailable bpf falls back to memory with a warning")
	fs.StringSliceVar(&c.Services, "services", nil, "services to load and keep, as namespace/name (comma-separated)")
	fs.StringSliceVar(&c.Namespaces, "namespaces", nil, "namespaces whose every service is loaded and kept (comma-separated)")
	fs.BoolVar(&c.OnDemand, "on-demand", true, "load the service of a VIP inside --service-cidrs when a local socket connects to it")
	fs.StringSliceVar(&c.ServiceCIDRs, "service-cidrs", nil, "CIDRs of service VIPs (e.g. the cluster's service CIDR 10.96.0.0/12); empty: nothing is loaded on demand")
	fs.StringVar(&c.NodeName, "node-name", "", "this node's name (default $NODE_NAME, else the host name)")
	c.Etcd.Bind(fs, "etcd endpoints (comma-separated), required: outside --service-cidrs (see the README)")
	fs.IntVar(&c.Shards, "shards", keyspace.DefaultShards, "number of keyspace shards; must match the relays' --shards")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "127.0.0.1:9465", "address of /metrics, /healthz, /readyz and, with --pprof, /debug/pprof/ (empty disables)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof/ on --metrics-listen")
	bindPinPath(fs, &c.PinPath)
	fs.StringVar(&c.CgroupPath, "cgroup-path", datapath.DefaultCgroupPath, "cgroup v2 directory the socket programs attach to")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", nodeagent.DefaultIdleTimeout, "unload an on-demand service unused this long (0 never unloads)")
	fs.IntVar(&c.MaxServices, "max-services", nodeagent.DefaultMaxServices, "most services loaded; past it the least recently used on-demand service makes room")
	fs.DurationVar(&c.FlushWindow, "flush-window", nodeagent.DefaultFlushWindow, "how long changes are coalesced before they are written (0 writes at once)")
	fs.Float64Var(&c.MaxMapOpsPerSecond, "max-map-ops-per-second", nodeagent.DefaultMaxMapOpsPerSecond, "map entries written per second at most (token bucket)")
	fs.IntVar(&c.MapOpsBurst, "map-ops-burst", nodeagent.DefaultBurst, "token bucket size, and the largest change set written at once (entries)")
	fs.DurationVar(&c.StallTimeout, "stall-timeout", nodeagent.DefaultStallTimeout, "/healthz fails when no datapath write succeeded this long while changes are queued or services parked")
	c.Log.Bind(fs)
}

func bindPinPath(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "bpf-pin-path", datapath.DefaultPinPath, "bpffs directory of the pinned maps and program links")
}

// Validate checks every value: the command's own rules, then the library's
// (nodeagent.Options.Validate). The error names the flag (exit status 2).
func (c *config) Validate() error {
	if err := c.Log.Validate(); err != nil {
		return err
	}
	if err := c.Etcd.Validate(); err != nil {
		return err
	}
	if err := cliconfig.OneOf("datapath", c.Datapath.kind, datapathBPF, datapathMemory); err != nil {
		return err
	}
	if len(c.Etcd.Endpoints) == 0 && c.Etcd.EndpointsFile == "" {
		return cliconfig.Invalid("etcd-endpoints", "", "required (or --etcd-endpoints-file): the node agent reads the relays' etcd (it never starts one)")
	}
	_, err := c.options()
	return err
}

// optionFlags names the flag of each nodeagent.Options field the command
// sets, to report the library's FieldError as a bad flag.
var optionFlags = map[string]string{
	"Cluster":      "cluster",
	"Shards":       "shards",
	"Namespaces":   "namespaces",
	"ServiceCIDRs": "service-cidrs",
	"Services":     "services",
}

// options converts c to the agent library's options (without Logger and
// Registerer) and checks them; the error names the flag.
func (c *config) options() (nodeagent.Options, error) {
	opts := nodeagent.Options{
		Cluster:            c.Etcd.Cluster,
		Shards:             c.Shards,
		NodeName:           c.NodeName,
		Namespaces:         c.Namespaces,
		OnDemand:           c.OnDemand,
		IdleTimeout:        c.IdleTimeout,
		MaxServices:        c.MaxServices,
		FlushWindow:        c.FlushWindow,
		MaxMapOpsPerSecond: c.MaxMapOpsPerSecond,
		Burst:              c.MapOpsBurst,
		StallTimeout:       c.StallTimeout,
	}
	for _, s := range c.Services {
		svc, err := keyspace.ParseService(s)
		if err != nil {
			return opts, cliconfig.Invalid("services", s, "want namespace/name")
		}
		opts.Services = append(opts.Services, svc)
	}
	for _, s := range c.ServiceCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return opts, cliconfig.Invalid("service-cidrs", s, "want a CIDR such as 10.96.0.0/12")
		}
		opts.ServiceCIDRs = append(opts.ServiceCIDRs, p.Masked())
	}
	// The library reads zero as its default; on the command line 0 means
	// "never" (idle-timeout) and "at once" (flush-window), and the other
	// zeros are refused.
	switch {
	case c.Shards < 1:
		return opts, cliconfig.Invalid("shards", c.Shards, fmt.Sprintf("want 1..%d", keyspace.MaxShards))
	case c.IdleTimeout < 0:
		return opts, cliconfig.Invalid("idle-timeout", c.IdleTimeout, "want >= 0")
	case c.MaxServices < 1:
		return opts, cliconfig.Invalid("max-services", c.MaxServices, "want >= 1")
	case c.FlushWindow < 0:
		return opts, cliconfig.Invalid("flush-window", c.FlushWindow, "want >= 0")
	case c.MaxMapOpsPerSecond <= 0:
		return opts, cliconfig.Invalid("max-map-ops-per-second", c.MaxMapOpsPerSecond, "want > 0")
	case c.MapOpsBurst < 1:
		return opts, cliconfig.Invalid("map-ops-burst", c.MapOpsBurst, "want >= 1")
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = -1 // never
	}
	if opts.FlushWindow == 0 {
		opts.FlushWindow = -1 // at once
	}
	if opts.NodeName == "" {
		opts.NodeName = defaultNodeName()
	}
	if err := opts.Validate(); err != nil {
		var fe *nodeagent.FieldError
		if errors.As(err, &fe) && optionFlags[fe.Field] != "" {
			return opts, cliconfig.Invalid(optionFlags[fe.Field], fe.Value, fe.Reason)
		}
		return opts, err
	}
	return opts, nil
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

// pinConfig is the configuration of dump and uninstall, which read or
// remove the pinned maps (bpf only: the memory datapath lives inside the
// agent process).
type pinConfig struct {
	File    cliconfig.ConfigFile
	Log     cliconfig.Log
	PinPath string
}

func (c *pinConfig) Bind(fs *pflag.FlagSet) {
	c.File.Bind(fs)
	bindPinPath(fs, &c.PinPath)
	c.Log.Bind(fs)
}

func (c *pinConfig) Validate() error { return c.Log.Validate() }
