package chaos

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/relay"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
)

// A roleFunc plays a child's role until ctx ends: it decodes its
// configuration, calls ready once it serves, and returns what the test
// should learn when it stops (printed as the RESULT line).
type roleFunc func(ctx context.Context, raw []byte, ready func(any)) (any, error)

// roles a child can play.
var roles = map[string]roleFunc{
	"etcd":   runEtcd,
	"relay":  runRelay,
	"agent":  runAgent,
	"agents": runAgents,
}

func decode[T any](raw []byte) (T, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("role config %s: %w", raw, err)
	}
	return v, nil
}

// parseServices parses "namespace/name" service names.
func parseServices(names []string) ([]keyspace.Service, error) {
	var out []keyspace.Service
	for _, s := range names {
		k, err := keyspace.ParseService(s)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func childLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// etcdConfig: an embedded etcd on ClientURL (empty: a free port) with its
// data in Dir (a fresh directory means an empty etcd).
type etcdConfig struct {
	ClientURL string `json:"clientURL"`
	Dir       string `json:"dir"`
}

// etcdReady is what the etcd role reports when it serves.
type etcdReady struct {
	URL string `json:"url"`
}

func runEtcd(ctx context.Context, raw []byte, ready func(any)) (any, error) {
	cfg, err := decode[etcdConfig](raw)
	if err != nil {
		return nil, err
	}
	srv, err := embedetcd.Start(ctx, embedetcd.Options{ClientURL: cfg.ClientURL, Dir: cfg.Dir, Logger: childLogger()})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	ready(etcdReady{URL: srv.Endpoints()[0]})
	<-ctx.Done()
	return nil, ctx.Err()
}

// relayConfig: a relay between the simulator at Istiod and etcd at Etcd.
// With LeaseTTL set it is one replica of several (shard elections, fenced
// writes); Window and MaxDelay, when set, widen its coalescing window.
type relayConfig struct {
	Etcd     string        `json:"etcd"`
	Istiod   string        `json:"istiod"`
	ID       string        `json:"id"`
	LeaseTTL time.Duration `json:"leaseTTL,omitempty"`
	Window   time.Duration `json:"window,omitempty"`
	MaxDelay time.Duration `json:"maxDelay,omitempty"`
}

// relayResult is what a relay reports when it stops.
type relayResult struct {
	Stats  etcdsink.Stats      `json:"stats"`
	Shards etcdsink.ShardStats `json:"shards"`
	// Deposed counts the shards it gave up because a write was fenced.
	Deposed uint64 `json:"deposed"`
}

func runRelay(ctx context.Context, raw []byte, ready func(any)) (any, error) {
	cfg, err := decode[relayConfig](raw)
	if err != nil {
		return nil, err
	}
	c, err := embedetcd.NewClient([]string{cfg.Etcd})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	opts := relay.Options{
		Istiod: cfg.Istiod, RelayID: cfg.ID, SyncTimeout: 2 * time.Second,
		Sink: etcdsink.Options{
			Window: cmp.Or(cfg.Window, 10*time.Millisecond), MaxDelay: cmp.Or(cfg.MaxDelay, 100*time.Millisecond),
			RequestTimeout: time.Second, GenerationCheckInterval: 200 * time.Millisecond,
		},
		Logger: childLogger(),
	}
	if cfg.LeaseTTL > 0 {
		opts.HA = &relay.HA{Client: c, LeaseTTL: cfg.LeaseTTL, Pod: cfg.ID}
	}
	r, err := relay.New(c, opts)
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	if err := waitRelayReady(r, errc); err != nil {
		return nil, err
	}
	ready(struct{}{})
	err = <-errc
	res := relayResult{Stats: r.Stats(), Shards: r.ShardStats()}
	if m := r.Membership(); m != nil {
		res.Deposed = m.Stats().Deposed
	}
	return res, err
}

// waitRelayReady waits until the relay is ready: synced markers written
// (a single relay), or its /readyz answer (a replica, which may lead no
// shard at first); or until Run ended (errc).
func waitRelayReady(r *relay.Relay, errc <-chan error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.Synced():
			return nil
		case err := <-errc:
			return errors.Join(errors.New("relay ended before it was ready"), err)
		case <-tick.C:
			if ok, _ := r.Ready(); ok && r.Membership() != nil {
				return nil
			}
		}
	}
}

// agentConfig: a node agent over the bpf datapath pinned at PinPath, its
// programs attached to CgroupPath, loading Services.
type agentConfig struct {
	Etcd         string   `json:"etcd"`
	PinPath      string   `json:"pinPath"`
	CgroupPath   string   `json:"cgroupPath"`
	Services     []string `json:"services"`
	ServiceCIDRs []string `json:"serviceCIDRs"`
}

// agentResult is what an agent reports when it stops.
type agentResult struct {
	Updates, Deletes int64
}

func runAgent(ctx context.Context, raw []byte, ready func(any)) (any, error) {
	cfg, err := decode[agentConfig](raw)
	if err != nil {
		return nil, err
	}
	opts := nodeagent.Options{NodeName: "chaos", Logger: childLogger()}
	if opts.Services, err = parseServices(cfg.Services); err != nil {
		return nil, err
	}
	for _, s := range cfg.ServiceCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		opts.ServiceCIDRs = append(opts.ServiceCIDRs, p)
	}
	c, err := embedetcd.NewClient([]string{cfg.Etcd})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	dp, err := datapath.OpenBPF(datapath.BPFOptions{PinPath: cfg.PinPath, Logger: childLogger(),
		Programs: datapath.ProgramsOptions{CgroupPath: cfg.CgroupPath}})
	if err != nil {
		return nil, err
	}
	defer dp.Close()
	a, err := nodeagent.New(c, dp, opts)
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ok, _ := a.Ready(); !ok; ok, _ = a.Ready() {
		select {
		case err := <-errc:
			return nil, errors.Join(errors.New("agent ended before it was ready"), err)
		case <-tick.C:
		}
	}
	ready(struct{}{})
	err = <-errc
	st := a.Stats()
	return agentResult{Updates: st.Updates, Deletes: st.Deletes}, err
}
