package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/shard"
)

// HA configures a relay as one replica of several (docs/contract.md,
// "Relay replicas and shard leadership"): it registers relays/<relay-id>,
// campaigns for shards once its upstream is synced, and writes only the
// shards it leads, every write fenced by its leadership.
type HA struct {
	// Client is the etcd client the elections run on; etcd's
	// concurrency package needs the full client. Required.
	Client *clientv3.Client
	// LeaseTTL is the replica's lease: its shards are taken over this
	// long after it stops. Default shard.DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Pod is reported in the membership record.
	Pod string
}

// newMembership creates the relay's Membership and returns it as the
// writer's Fencer.
func (r *Relay) newMembership() (*shard.Membership, error) {
	ha := r.opts.HA
	if ha.Client == nil {
		return nil, errors.New("relay: HA without an etcd client")
	}
	m, err := shard.New(ha.Client, shard.Options{
		Cluster:  r.opts.Cluster,
		Shards:   r.opts.Shards,
		RelayID:  r.opts.RelayID,
		Pod:      ha.Pod,
		Version:  version(),
		LeaseTTL: ha.LeaseTTL,
		Eligible: r.eligible,
		OnChange: r.leadershipChanged,
		Logger:   r.log.With("stage", "shard"),
	})
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r.held, r.lostAt = map[int]bool{}, map[int]time.Time{}
	r.edsKeep = cmp.Or(ha.LeaseTTL, shard.DefaultLeaseTTL)
	return m, nil
}

// eligible reports whether the upstream stream is connected and its state
// complete: only then the replica campaigns for shards.
func (r *Relay) eligible() bool {
	if !r.client.Connected() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.completes > 0 && r.wasComplete
}

// runMembership runs the Membership, if any, until ctx is done.
func (r *Relay) runMembership(ctx context.Context) error {
	if r.membership == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	return r.membership.Run(ctx)
}

// haReady is Ready's answer for a replica: its upstream is synced, every
// shard has a leader, and every shard this replica leads is taken over
// (its marker current).
func (r *Relay) haReady() (bool, string) {
	if !r.eligible() {
		return false, "upstream not connected and synced"
	}
	if !r.membership.Settled() {
		return false, "shard leadership not settled (a shard without leader, or an election just won)"
	}
	held := r.sink.ShardStats().Held
	led := r.membership.Held()
	if len(held) != len(led) {
		return false, fmt.Sprintf("leads %d shards, writes %d", len(led), len(held))
	}
	for i, h := range held {
		if h.Shard != led[i] {
			return false, fmt.Sprintf("leads shard %d, writes %d", led[i], h.Shard)
		}
		if !h.Synced {
			return false, fmt.Sprintf("taking over shard %d", h.Shard)
		}
	}
	return true, ""
}

// Membership returns the replica's membership; nil without Options.HA.
func (r *Relay) Membership() *shard.Membership { return r.membership }

// ShardStats returns the writer's shard counters (held shards, takeovers,
// fenced writes).
func (r *Relay) ShardStats() etcdsink.ShardStats { return r.sink.ShardStats() }

// version is the relay's module version, "(devel)" in a source build.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "unknown"
}
