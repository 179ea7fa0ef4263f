package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
)

// Scenario names (--scenario).
const (
	ScenarioSteady        = "steady"
	ScenarioRolling       = "rolling-restart"
	ScenarioNodeFailure   = "node-failure"
	ScenarioScaleUp       = "scale-up"
	ScenarioIstiodRestart = "istiod-restart"
	ScenarioRelayKill     = "relay-kill"
	ScenarioEtcdWipe      = "etcd-wipe"
)

var Scenarios = []string{ScenarioSteady, ScenarioRolling, ScenarioNodeFailure, ScenarioScaleUp,
	ScenarioIstiodRestart, ScenarioRelayKill, ScenarioEtcdWipe}

// Modes (--modes): relay is meshrelay (Istiod → relay → etcd → node
// agents); direct is today's alternative (every node its own xDS stream to
// Istiod, one map syscall per entry).
const (
	ModeRelay  = "relay"
	ModeDirect = "direct"
)

// Upstream xDS APIs (--xds-api): which API the simulated Istiod serves to
// the relay (relay --mode sotw|workload) and to every direct node. SotW is
// what sidecar-less meshes consume in Kmesh's ADS mode (CDS, EDS, LDS, RDS
// over State-of-the-World ADS); workload is Istio's ambient workload API
// (istio.workload.Address over delta ADS), as ztunnel and Kmesh's workload
// mode consume it.
const (
	APISotW     = "sotw"
	APIWorkload = "workload"
)

// Config is the harness's configuration: one run of one scenario in one or
// both modes. Flags set every field; zero values are replaced by the
// defaults documented on Register.
type Config struct {
	Scenario            string
	Services            int
	EndpointsPerService int
	Namespaces          int
	PortsPerService     int
	Weights             bool
	Nodes               int
	ServicesPerNode     int
	ZipfS               float64
	OnDemand            bool
	ChurnRate           float64
	Duration            time.Duration
	RelayReplicas       int
	Seed                int64
	Out                 string
	EtcdEndpoints       []string
	Modes               []string
	XDSAPI              string
	DirectNodes         int
	DirectScope         string
	Debounce            time.Duration
	ScaleBatch          int
	FailFraction        float64
	ConvergeTimeout     time.Duration
	Plots               bool
	Progress            bool
	// Command is the command line as typed, for the report.
	Command string
}

// Register adds the harness's flags to fs and returns the Config
// they fill.
func Register(fs *pflag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.Scenario, "scenario", ScenarioRolling, "scenario: "+strings.Join(Scenarios, ", "))
	fs.IntVar(&c.Services, "services", 10000, "services in the mesh (the target count for scale-up)")
	fs.IntVar(&c.EndpointsPerService, "endpoints-per-service", 5, "endpoints of every service")
	fs.IntVar(&c.Namespaces, "namespaces", 10, "namespaces the services are spread over")
	fs.IntVar(&c.PortsPerService, "ports-per-service", 1, "ports of every service")
	fs.BoolVar(&c.Weights, "weights", true, "give endpoints load-balancing weights in [1, 10]")
	fs.IntVar(&c.Nodes, "nodes", 200, "simulated nodes per mode")
	fs.IntVar(&c.ServicesPerNode, "services-per-node", 50, "services each node uses, drawn from a Zipf distribution")
	fs.Float64Var(&c.ZipfS, "zipf-s", 1.1, "Zipf exponent s (> 1) of the services nodes use")
	fs.BoolVar(&c.OnDemand, "on-demand", false, "relay mode: nodes discover their services on demand (a connect to an unknown VIP) instead of declaring them")
	fs.Float64Var(&c.ChurnRate, "churn-rate", 100, "endpoints replaced per second (steady, rolling-restart)")
	fs.DurationVar(&c.Duration, "duration", 60*time.Second, "how long the scenario's changes last")
	fs.IntVar(&c.RelayReplicas, "relays", 1, "relay replicas; they split the shards by etcd election")
	// --relay-replicas is the flag's former name, still accepted.
	fs.IntVar(&c.RelayReplicas, "relay-replicas", 1, "relay replicas (deprecated: --relays)")
	_ = fs.MarkDeprecated("relay-replicas", "use --relays")
	fs.Int64Var(&c.Seed, "seed", 1, "seed of the mesh, the workload and the churn")
	fs.StringVar(&c.Out, "out", "", "results directory (default scale-tests/results/<scenario>-<nodes>n-<time>)")
	fs.StringSliceVar(&c.EtcdEndpoints, "etcd-endpoints", nil, "use this etcd instead of starting one (loopback only; not for etcd-wipe)")
	fs.StringSliceVar(&c.Modes, "modes", []string{ModeRelay, ModeDirect}, "modes to run, in order: relay, direct")
	fs.StringVar(&c.XDSAPI, "xds-api", APISotW, "upstream xDS API of the relay and of direct nodes: sotw (CDS/EDS/LDS/RDS, relay --mode sotw) or workload (istio.workload.Address over delta ADS, relay --mode workload)")
	// --mode is the same setting under the relay's own flag name.
	fs.StringVar(&c.XDSAPI, "mode", APISotW, "same as --xds-api (the relay's --mode): sotw or workload")
	fs.IntVar(&c.DirectNodes, "direct-nodes", 0, "nodes of direct mode; 0 = --nodes, capped by the memory a full xDS copy per node needs")
	fs.StringVar(&c.DirectScope, "direct-scope", "used", "direct mode writes the services its node uses (used) or every service (all, as Kmesh does)")
	fs.DurationVar(&c.Debounce, "debounce", 100*time.Millisecond, "Istiod simulator push debounce (Istiod's is 100 ms)")
	fs.IntVar(&c.ScaleBatch, "scale-batch", 500, "scale-up: services added per batch")
	fs.Float64Var(&c.FailFraction, "fail-fraction", 0.1, "node-failure: share of endpoints that vanish")
	fs.DurationVar(&c.ConvergeTimeout, "converge-timeout", 2*time.Minute, "longest wait for every node to match the simulator's truth")
	fs.BoolVar(&c.Plots, "plots", true, "write PNG plots")
	fs.BoolVar(&c.Progress, "progress", true, "print a progress line every second")
	return c
}

// Validate checks the configuration and fills derived defaults.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !slices.Contains(Scenarios, c.Scenario) {
		bad("--scenario %q: want one of %s", c.Scenario, strings.Join(Scenarios, ", "))
	}
	if c.Services < 1 || c.Services > istiodsim.MaxServices {
		bad("--services %d: want 1..%d (VIPs in 127.77.0.0/16)", c.Services, istiodsim.MaxServices)
	}
	if c.EndpointsPerService < 1 || c.EndpointsPerService > 1000 {
		bad("--endpoints-per-service %d: want 1..1000", c.EndpointsPerService)
	}
	if c.Namespaces < 1 {
		bad("--namespaces %d: want at least 1", c.Namespaces)
	}
	if c.PortsPerService < 1 || c.PortsPerService > 16 {
		bad("--ports-per-service %d: want 1..16", c.PortsPerService)
	}
	if c.Nodes < 1 || c.Nodes > 20000 {
		bad("--nodes %d: want 1..20000", c.Nodes)
	}
	if c.ServicesPerNode < 1 || c.ServicesPerNode > c.Services {
		bad("--services-per-node %d: want 1..--services (%d)", c.ServicesPerNode, c.Services)
	}
	if c.ZipfS <= 1 {
		bad("--zipf-s %v: must be > 1", c.ZipfS)
	}
	if c.ChurnRate <= 0 {
		bad("--churn-rate %v: must be > 0", c.ChurnRate)
	}
	if c.Duration <= 0 {
		bad("--duration %v: must be > 0", c.Duration)
	}
	if c.RelayReplicas < 1 || c.RelayReplicas > 8 {
		bad("--relays %d: want 1..8", c.RelayReplicas)
	}
	if len(c.Modes) == 0 {
		bad("--modes: want relay, direct or both")
	}
	for _, m := range c.Modes {
		if m != ModeRelay && m != ModeDirect {
			bad("--modes %q: want relay or direct", m)
		}
	}
	if c.XDSAPI != APISotW && c.XDSAPI != APIWorkload {
		bad("--xds-api %q: want %s or %s", c.XDSAPI, APISotW, APIWorkload)
	}
	if c.DirectNodes < 0 {
		bad("--direct-nodes %d: must be >= 0", c.DirectNodes)
	}
	if c.DirectScope != "used" && c.DirectScope != "all" {
		bad("--direct-scope %q: want used or all", c.DirectScope)
	}
	if c.Debounce < 0 {
		bad("--debounce %v: must be >= 0", c.Debounce)
	}
	if c.ScaleBatch < 1 {
		bad("--scale-batch %d: must be >= 1", c.ScaleBatch)
	}
	if c.FailFraction <= 0 || c.FailFraction >= 1 {
		bad("--fail-fraction %v: want (0, 1)", c.FailFraction)
	}
	if c.ConvergeTimeout <= 0 {
		bad("--converge-timeout %v: must be > 0", c.ConvergeTimeout)
	}
	for _, ep := range c.EtcdEndpoints {
		if err := CheckLoopbackURL(ep); err != nil {
			bad("--etcd-endpoints: %v", err)
		}
	}
	if len(c.EtcdEndpoints) > 0 && c.Scenario == ScenarioEtcdWipe {
		bad("--scenario etcd-wipe wipes the etcd it started: not with --etcd-endpoints")
	}
	return errors.Join(errs...)
}

// API is the upstream xDS API of the run: XDSAPI, or SotW for a summary
// written before the flag existed.
func (c *Config) API() string {
	if c.XDSAPI == "" {
		return APISotW
	}
	return c.XDSAPI
}

// InitialServices is the number of services the simulator starts with:
// the target count, except for scale-up which grows to it in batches.
func (c *Config) InitialServices() int {
	if c.Scenario == ScenarioScaleUp {
		return min(c.ScaleBatch, c.Services)
	}
	return c.Services
}

// AppliesTo reports whether the scenario means anything in mode: direct
// nodes have no relay and no etcd to lose.
func (c *Config) AppliesTo(mode string) bool {
	if mode == ModeDirect {
		return c.Scenario != ScenarioRelayKill && c.Scenario != ScenarioEtcdWipe
	}
	return true
}

// CheckLoopbackURL refuses an etcd endpoint that is not on loopback: the
// harness never talks beyond this machine.
func CheckLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		u, err = url.Parse("http://" + raw)
		if err != nil {
			return fmt.Errorf("%q: %w", raw, err)
		}
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: not a loopback address", raw)
	}
	return nil
}

// LivenessChurn is how long the scenarios that break a component churn
// afterwards, to show that changes flow again.
const LivenessChurn = 5 * time.Second
