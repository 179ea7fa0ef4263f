package shard

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// Defaults of Options.
const (
	DefaultLeaseTTL = 10 * time.Second
	// MinLeaseTTL is the shortest lease: etcd's lease TTLs are whole
	// seconds.
	MinLeaseTTL = time.Second
)

// Options configure a Membership. Zero fields take the documented defaults.
type Options struct {
	// Cluster is the keyspace's cluster id. Default keyspace.DefaultCluster.
	Cluster string
	// Shards is the shard count. Default keyspace.DefaultShards.
	Shards int
	// RelayID is this replica's id: its relays/<relay-id> key and the
	// value of its election keys. Required; unique among replicas.
	RelayID string
	// Pod and Version are reported in the membership record.
	Pod, Version string
	// LeaseTTL is the TTL of the replica's lease, rounded up to whole
	// seconds: a replica that stops renewing it loses its shards this long
	// after. Default 10 s.
	LeaseTTL time.Duration
	// Interval is how often the replica reads the election table and
	// balances. Default LeaseTTL/20, within 50 ms .. 500 ms.
	Interval time.Duration
	// Eligible reports whether this replica's upstream is healthy and
	// synced; only then it campaigns. nil means always.
	Eligible func() bool
	// OnChange is called, without locks held, whenever the set of shards
	// led changes (the writer then takes over or drops shards). It must
	// not block.
	OnChange func()
	// Logger receives the Membership's logs. Default: discarded.
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (o Options) Validate() error {
	switch {
	case o.RelayID == "" || strings.Contains(o.RelayID, "/"):
		return fmt.Errorf("shard: RelayID %q: want non-empty, without '/'", o.RelayID)
	case strings.Contains(o.Cluster, "/"):
		return fmt.Errorf("shard: Cluster %q contains '/'", o.Cluster)
	case o.Shards < 0 || o.Shards > keyspace.MaxShards:
		return fmt.Errorf("shard: Shards %d: want 1..%d", o.Shards, keyspace.MaxShards)
	case o.LeaseTTL != 0 && o.LeaseTTL < MinLeaseTTL:
		return fmt.Errorf("shard: LeaseTTL %v: want >= %v", o.LeaseTTL, MinLeaseTTL)
	case o.Interval < 0:
		return fmt.Errorf("shard: Interval %v: want >= 0", o.Interval)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Shards <= 0 {
		o.Shards = keyspace.DefaultShards
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Interval <= 0 {
		o.Interval = min(max(o.LeaseTTL/20, 50*time.Millisecond), 500*time.Millisecond)
	}
	if o.Eligible == nil {
		o.Eligible = func() bool { return true }
	}
	if o.OnChange == nil {
		o.OnChange = func() {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// ttlSeconds is LeaseTTL in whole seconds, rounded up.
func (o Options) ttlSeconds() int {
	return int((o.LeaseTTL + time.Second - 1) / time.Second)
}
