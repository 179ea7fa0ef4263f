package nodeagent

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
)

// Defaults of Options.
const (
	DefaultIdleTimeout         = 30 * time.Minute
	DefaultMaxServices         = 10_000
	DefaultFlushWindow         = 20 * time.Millisecond
	DefaultMaxMapOpsPerSecond  = 100_000
	DefaultBurst               = 10_000
	DefaultMaxAppliesPerSecond = 200
	DefaultStallTimeout        = 2 * time.Minute
)

// Options configure an Agent. Zero fields take the documented defaults.
type Options struct {
	// Cluster is the keyspace's cluster id. Default keyspace.DefaultCluster.
	Cluster string
	// Shards is the number of relay shards; it must match the relay's
	// --shards. Default keyspace.DefaultShards.
	Shards int
	// NodeName names the node in logs.
	NodeName string

	// Services are loaded at start and kept loaded.
	Services []keyspace.Service
	// Namespaces: every service of these namespaces is loaded and kept.
	Namespaces []string
	// OnDemand loads the service of a VIP that ReportMiss reports (the bpf
	// programs report connects to unknown addresses inside ServiceCIDRs).
	// The command's default is true.
	OnDemand bool
	// ServiceCIDRs are the ranges service VIPs are in. Misses outside them
	// are ignored; with none, nothing is loaded on demand. When set, a spec
	// with a VIP outside them is invalid: it is not installed (declared
	// services included), and its service keeps its last good state.
	ServiceCIDRs []netip.Prefix
	// IdleTimeout unloads an on-demand service unused this long. Default
	// 30 m; negative never unloads.
	IdleTimeout time.Duration
	// MaxServices bounds the services loaded. Past it, a new on-demand
	// service evicts the least recently used on-demand one, or is refused
	// when there is none. Declared services are always loaded. Default
	// 10,000.
	MaxServices int

	// FlushWindow is the shortest time between two flushes: a change
	// after quiet is flushed at once (after a packing delay of 2 ms), the
	// changes that follow within the window together at its end. Default
	// 20 ms; negative flushes at once.
	FlushWindow time.Duration
	// MaxMapOpsPerSecond is the token bucket rate of map entries written.
	// Default 100,000.
	MaxMapOpsPerSecond float64
	// Burst is the token bucket size, and the size of the chunks a large
	// flush is cut into. Default 10,000.
	Burst int
	// MaxAppliesPerSecond limits the change sets applied per second
	// (each is at least one map syscall). Default 200.
	MaxAppliesPerSecond float64

	// StallTimeout: Healthy reports false when no change set was written
	// for this long while changes are queued or services are parked.
	// Default 2 m.
	StallTimeout time.Duration

	// Source tunes the etcd source. Its Cluster, Shards, ServiceCIDRs and
	// Logger are taken from the fields above and must be left zero
	// (Validate).
	Source etcdsource.Options

	// Registerer receives the agent's metrics (its own collectors, the
	// source's and the datapath's per-map figures); nil registers none
	// (Stats reads the same collectors).
	Registerer prometheus.Registerer
	// Logger receives the agent's logs. Default: discarded.
	Logger *slog.Logger
	// Now is the clock of idle eviction and propagation lag. Default time.Now.
	Now func() time.Time
}

// FieldError is the invalid Options field Validate reports: Field is its
// name ("Namespaces"), Value the offending value (one element of a list).
type FieldError struct {
	Field  string
	Value  any
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("nodeagent: %s %q: %s", e.Field, fmt.Sprint(e.Value), e.Reason)
}

// Validate reports the first invalid field as a *FieldError: a cluster id
// holding '/', shards out of range, a namespace that is empty or holds '/',
// an invalid service CIDR, a service without namespace or name, or a field
// of Source that New would overwrite (Cluster, Shards, Logger: set them on
// Options). Zero values are valid (they take the defaults).
func (o Options) Validate() error {
	switch {
	case strings.Contains(o.Cluster, "/"):
		return &FieldError{"Cluster", o.Cluster, "want an id without '/'"}
	case o.Shards < 0 || o.Shards > keyspace.MaxShards:
		return &FieldError{"Shards", o.Shards, fmt.Sprintf("want 1..%d", keyspace.MaxShards)}
	case o.Source.Cluster != "" || o.Source.Shards != 0 || o.Source.Logger != nil || o.Source.ServiceCIDRs != nil:
		return &FieldError{"Source", "Cluster, Shards, Logger, ServiceCIDRs", "set them on nodeagent.Options, not on Options.Source"}
	}
	for _, ns := range o.Namespaces {
		if ns == "" || strings.Contains(ns, "/") {
			return &FieldError{"Namespaces", ns, "want a name without '/'"}
		}
	}
	for _, p := range o.ServiceCIDRs {
		if !p.IsValid() {
			return &FieldError{"ServiceCIDRs", p, "want a valid CIDR"}
		}
	}
	for _, svc := range o.Services {
		if svc.Namespace == "" || svc.Name == "" {
			return &FieldError{"Services", svc, "want namespace/name"}
		}
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Cluster == "" {
		o.Cluster = keyspace.DefaultCluster
	}
	if o.Shards <= 0 {
		o.Shards = keyspace.DefaultShards
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxServices <= 0 {
		o.MaxServices = DefaultMaxServices
	}
	if o.FlushWindow == 0 {
		o.FlushWindow = DefaultFlushWindow
	}
	if o.MaxMapOpsPerSecond <= 0 {
		o.MaxMapOpsPerSecond = DefaultMaxMapOpsPerSecond
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.MaxAppliesPerSecond <= 0 {
		o.MaxAppliesPerSecond = DefaultMaxAppliesPerSecond
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Source.Cluster, o.Source.Shards, o.Source.Logger = o.Cluster, o.Shards, o.Logger.With("stage", "etcdsource")
	o.Source.ServiceCIDRs = o.ServiceCIDRs // a spec's VIPs must be inside them (docs/contract.md)
	return o
}
