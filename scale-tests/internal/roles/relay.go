package roles

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/relay"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/xds/delta"
	"github.com/meshrelay/meshrelay/relay/xds/sotw"
	"github.com/meshrelay/meshrelay/scale-tests/internal/control"
	"github.com/meshrelay/meshrelay/scale-tests/internal/launch"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
)

// RelayConfig configures one relay replica.
type RelayConfig struct {
	Istiod  string   `json:"istiod"`
	Etcd    []string `json:"etcd"`
	ID      string   `json:"id"`
	Cluster string   `json:"cluster"`
	// Mode is the relay's upstream API (relay --mode): relay.ModeSotW
	// (empty) or relay.ModeWorkload.
	Mode relay.Mode `json:"mode,omitempty"`
	// LeaseTTL is the replica's lease (default shard.DefaultLeaseTTL):
	// replicas split the shards and take a dead one's over after it.
	LeaseTTL time.Duration `json:"lease_ttl"`
}

// RelayStats is what a relay replica reports.
type RelayStats struct {
	// Started and Synced are Unix nanoseconds: when Run started and when
	// the first complete sync was in etcd (0: not yet).
	Started int64          `json:"started"`
	Synced  int64          `json:"synced"`
	Sink    etcdsink.Stats `json:"sink"`
	// Shards are the shards the replica writes, its takeovers and its
	// writes refused by a shard's fence.
	Shards etcdsink.ShardStats `json:"shards"`
}

func runRelayRole(ctx context.Context, raw []byte, ctl *control.Server, log *slog.Logger, ready func(string)) error {
	cfg, err := launch.DecodeConfig[RelayConfig](raw)
	if err != nil {
		return err
	}
	client, err := etcddial.Dial(etcddial.Options{Endpoints: cfg.Etcd, Logger: log})
	if err != nil {
		return err
	}
	defer client.Close()
	getenv := func(k string) string {
		if k == "POD_NAME" {
			return cfg.ID
		}
		return ""
	}
	node := sotw.NodeFromEnv(getenv, cfg.Cluster)
	if cfg.Mode == relay.ModeWorkload {
		node = delta.NodeFromEnv(getenv, cfg.Cluster)
	}
	commits := measure.NewCommitLog(cfg.Cluster)
	r, err := relay.New(commitRecorder{Client: client, log: commits}, relay.Options{Istiod: cfg.Istiod, Mode: cfg.Mode, Node: node, Cluster: cfg.Cluster, RelayID: cfg.ID, Logger: log,
		HA: &relay.HA{Client: client, LeaseTTL: cfg.LeaseTTL, Pod: cfg.ID}})
	if err != nil {
		return err
	}
	started := time.Now().UnixNano()
	var synced atomic.Int64
	go func() {
		select {
		case <-r.Synced():
			synced.Store(time.Now().UnixNano())
		case <-ctx.Done():
		}
	}()
	control.Handle(ctl, "stats", func(ctx context.Context, _ struct{}) (RelayStats, error) {
		return RelayStats{Started: started, Synced: synced.Load(), Sink: r.Stats(), Shards: r.ShardStats()}, nil
	})
	control.Handle(ctl, "commits", func(ctx context.Context, req CommitsRequest) (CommitsResult, error) {
		return CommitsResult{Commits: commits.Since(req.Since)}, nil
	})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	ready("")
	err = <-done
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
