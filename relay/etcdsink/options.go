package etcdsink

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/backoff"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/relay/coalesce"
)

// Client is the part of an etcd client the Sink uses. *clientv3.Client
// satisfies it.
type Client interface {
	clientv3.KV
	clientv3.Watcher
}

// Defaults for Options.
const (
	DefaultOpsPerSecond            = 5_000
	DefaultBootstrapOpsPerSecond   = 200_000
	DefaultBurst                   = 1_000
	DefaultMaxTxnOps               = 128     // etcd's default --max-txn-ops
	DefaultMaxTxnBytes             = 1 << 20 // below etcd's 1.5 MiB request limit
	DefaultRequestTimeout          = 5 * time.Second
	DefaultGenerationCheckInterval = time.Second
	// Mass-deletion guard (docs/contract.md, "Held deletions").
	DefaultMaxDeleteFraction = 0.5
	DefaultDeleteGuardMin    = 10
	DefaultDeleteHoldTime    = 5 * time.Minute
	// DefaultRelayID is the relay id of a relay given none: the only
	// definition of it.
	DefaultRelayID = "relay"
)

// Options configure a Sink. Zero fields take the documented defaults.
type Options struct {
	// Cluster is the cluster id of the keyspace. Default keyspace.DefaultCluster.
	Cluster string
	// Shards is the number of shards synced/<shard> markers are written
	// for. Default keyspace.DefaultShards.
	Shards int
	// RelayID names this relay in synced markers; stable across restarts
	// (the pod name), or a restart rewrites every marker. Default
	// DefaultRelayID.
	RelayID string

	// Window and MaxDelay tune coalescing (coalesce.Options): defaults
	// 100 ms and 1 s.
	Window, MaxDelay time.Duration

	// OpsPerSecond is the steady-state token bucket rate of etcd operations
	// (puts + deletes). Default 5,000/s.
	OpsPerSecond float64
	// BootstrapOpsPerSecond is the rate until the first synced markers are
	// written, and again after etcd was wiped. Default 200,000/s.
	BootstrapOpsPerSecond float64
	// Burst is the token bucket size; raised to MaxTxnOps if smaller.
	// Default 1,000.
	Burst int

	// MaxTxnOps is the largest number of operations in one transaction.
	// Default 128, etcd's limit.
	MaxTxnOps int
	// MaxTxnBytes bounds the keys and values of one transaction. Default
	// 1 MiB. A single service larger than this is sent alone.
	MaxTxnBytes int

	// Backoff paces retries after a failed transaction.
	Backoff Backoff
	// RequestTimeout bounds every etcd request. Default 5 s.
	RequestTimeout time.Duration
	// GenerationCheckInterval is how often the generation key is read, on
	// top of being watched: a watch cannot see an etcd that was replaced
	// by an empty one at a lower revision. Default 1 s.
	GenerationCheckInterval time.Duration

	// MaxDeleteFraction is the largest share of the services in etcd one
	// upstream state may remove (delete, strip of every VIP, or strip of
	// every endpoint) before the removals are held. Default 0.5; 1 turns
	// the guard off.
	MaxDeleteFraction float64
	// DeleteGuardMin is the number of removals below which the guard never
	// holds, so that a small cluster's ordinary deletes apply. Default 10.
	DeleteGuardMin int
	// DeleteHoldTime is how long removals stay held before a complete
	// state of a fresh upstream stream asking for them releases them.
	// Default 5 minutes.
	DeleteHoldTime time.Duration

	// Fence, when set, returns comparisons added to every transaction
	// (e.g. "this relay still leads the shard"). A transaction whose fence
	// fails is not applied and Run returns ErrFenced.
	Fence func() []clientv3.Cmp
	// Fencer, when set, makes the Sink write only the shards it leads:
	// every transaction carries the fence of each shard whose services it
	// holds (the services one upstream push changed go out together
	// whatever their shards; a transaction refused on a fence is retried
	// shard by shard to find the refused one); a new shard is taken over (its keys read, only the
	// differences written, then its marker); a refused transaction's
	// writes are dropped and counted, and the Fencer told (Deposed). Call
	// Sink.ShardsChanged when the Fencer's shards change.
	Fencer Fencer

	// Logger receives the Sink's logs. Default: discarded.
	Logger *slog.Logger
}

// Validate reports the first field that is out of range. Zero fields are
// valid: they take the defaults.
func (o Options) Validate() error {
	switch {
	case strings.Contains(o.Cluster, "/"):
		return fmt.Errorf("etcdsink: Cluster %q contains '/'", o.Cluster)
	case o.Shards < 0 || o.Shards > keyspace.MaxShards:
		return fmt.Errorf("etcdsink: Shards %d: want 1..%d", o.Shards, keyspace.MaxShards)
	case o.Window < 0 || o.MaxDelay < 0:
		return fmt.Errorf("etcdsink: Window %v, MaxDelay %v: want >= 0", o.Window, o.MaxDelay)
	case o.Window > 0 && o.MaxDelay > 0 && o.MaxDelay < o.Window:
		return fmt.Errorf("etcdsink: MaxDelay %v below Window %v", o.MaxDelay, o.Window)
	case o.OpsPerSecond < 0 || o.BootstrapOpsPerSecond < 0:
		return fmt.Errorf("etcdsink: OpsPerSecond %v, BootstrapOpsPerSecond %v: want >= 0", o.OpsPerSecond, o.BootstrapOpsPerSecond)
	case o.Burst < 0 || o.MaxTxnOps < 0 || o.MaxTxnBytes < 0:
		return fmt.Errorf("etcdsink: Burst %d, MaxTxnOps %d, MaxTxnBytes %d: want >= 0", o.Burst, o.MaxTxnOps, o.MaxTxnBytes)
	case o.RequestTimeout < 0 || o.GenerationCheckInterval < 0:
		return fmt.Errorf("etcdsink: RequestTimeout %v, GenerationCheckInterval %v: want >= 0", o.RequestTimeout, o.GenerationCheckInterval)
	case o.MaxDeleteFraction < 0 || o.MaxDeleteFraction > 1:
		return fmt.Errorf("etcdsink: MaxDeleteFraction %v: want 0..1", o.MaxDeleteFraction)
	case o.DeleteGuardMin < 0 || o.DeleteHoldTime < 0:
		return fmt.Errorf("etcdsink: DeleteGuardMin %d, DeleteHoldTime %v: want >= 0", o.DeleteGuardMin, o.DeleteHoldTime)
	case o.Backoff.Initial < 0 || o.Backoff.Max < 0:
		return fmt.Errorf("etcdsink: Backoff %+v: want >= 0", o.Backoff)
	}
	return nil
}

// Backoff paces the writer's retries: Initial after the first failed
// transaction, doubling up to Max, jittered (see internal/backoff).
type Backoff = backoff.Options

func (o Options) withDefaults() Options {
	if o.Shards <= 0 {
		o.Shards = keyspace.DefaultShards
	}
	if o.RelayID == "" {
		o.RelayID = DefaultRelayID
	}
	if o.Window <= 0 {
		o.Window = coalesce.DefaultWindow
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = coalesce.DefaultMaxDelay
	}
	if o.OpsPerSecond <= 0 {
		o.OpsPerSecond = DefaultOpsPerSecond
	}
	if o.BootstrapOpsPerSecond <= 0 {
		o.BootstrapOpsPerSecond = DefaultBootstrapOpsPerSecond
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = DefaultMaxTxnOps
	}
	if o.MaxTxnBytes <= 0 {
		o.MaxTxnBytes = DefaultMaxTxnBytes
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	o.Burst = max(o.Burst, o.MaxTxnOps)
	if o.Backoff.Initial <= 0 {
		o.Backoff.Initial = 100 * time.Millisecond
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = 10 * time.Second
	}
	o.Backoff.Max = max(o.Backoff.Max, o.Backoff.Initial)
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.GenerationCheckInterval <= 0 {
		o.GenerationCheckInterval = DefaultGenerationCheckInterval
	}
	if o.MaxDeleteFraction <= 0 {
		o.MaxDeleteFraction = DefaultMaxDeleteFraction
	}
	if o.DeleteGuardMin <= 0 {
		o.DeleteGuardMin = DefaultDeleteGuardMin
	}
	if o.DeleteHoldTime <= 0 {
		o.DeleteHoldTime = DefaultDeleteHoldTime
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
