package roles

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/scale-tests/internal/control"
	"github.com/meshrelay/meshrelay/scale-tests/internal/launch"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/workload"
)

// serviceCIDR is where the simulator's VIPs are; on-demand misses outside
// it are ignored by the agents.
var serviceCIDR = netip.MustParsePrefix("127.77.0.0/16")

// runRelayNodesRole runs the relay-mode nodes: the real node agent
// (package nodeagent) per node, each with its own etcd connection and a
// memory datapath that counts ops and syscalls as the bpf one does.
func runRelayNodesRole(ctx context.Context, raw []byte, ctl *control.Server, log *slog.Logger, ready func(string)) error {
	cfg, err := launch.DecodeConfig[PoolConfig](raw)
	if err != nil {
		return err
	}
	p := newPool(cfg)
	if p.prof, err = startPoolProfile(RelayNodes, log); err != nil {
		return err
	}
	defer p.prof.stop()
	go emulateSeparateHeaps(ctx, len(cfg.Nodes), log)
	agents := make([]*nodeagent.Agent, 0, len(cfg.Nodes))
	var clients []*clientv3.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i, spec := range cfg.Nodes {
		pn := p.addNode(i, spec, datapath.MemoryOptions{Logger: log})
		client, err := dialEtcd(cfg.Etcd, &p.bytes)
		if err != nil {
			return fmt.Errorf("node %s: %w", spec.Name, err)
		}
		clients = append(clients, client)
		opts := nodeagent.Options{Cluster: cfg.Cluster, NodeName: spec.Name, Logger: log.With("node", spec.Name)}
		opts.Source.OnResponse = func(svc keyspace.Service, rev int64, at time.Time) {
			p.deliveries.Add(int32(i), svc.String(), rev, at)
		}
		if cfg.OnDemand {
			opts.OnDemand = true
			opts.ServiceCIDRs = []netip.Prefix{serviceCIDR}
		} else {
			opts.Services = make([]keyspace.Service, len(spec.Services))
			for j, s := range spec.Services {
				opts.Services[j] = workload.ServiceKey(s, cfg.Namespaces)
			}
		}
		a, err := nodeagent.New(client, pn.probe, opts)
		if err != nil {
			return fmt.Errorf("node %s: %w", spec.Name, err)
		}
		agents = append(agents, a)
	}
	p.totals = func(ps *PoolStats) {
		var t results.AgentTotals
		for _, a := range agents {
			st := a.Counts() // a fraction of Stats' cost, for 1,000 agents every second
			if st.Ready {
				t.Ready++
			}
			t.ServicesLoaded += int64(st.Services)
			t.QueueDepth += int64(st.QueueDepth)
			t.Events += st.Events
			t.Coalesced += st.Coalesced
			t.Flushes += st.Flushes
			t.ApplyErrors += st.ApplyErrors
			t.ThrottledSeconds += st.Throttled.Seconds()
			t.MissesLoaded += st.MissesLoaded
			t.MissesUnknown += st.MissesUnknown
			src := st.Source
			t.Watches += src.WatchesOpen
			t.Lists += src.Lists
			t.Relists += src.Relists
			t.VIPGets += src.Gets
			t.WatchEvents += src.WatchEvents
			t.GenerationChanges += src.GenerationChanges
		}
		ps.Agents = &t
	}
	p.register(ctl)

	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() {
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("agent stopped", "node", cfg.Nodes[i].Name, "err", err)
			}
		})
	}
	if cfg.OnDemand {
		for i, a := range agents {
			wg.Go(func() { connectOnDemand(ctx, a, cfg.Nodes[i], cfg.PortsPerService, log) })
		}
	}
	ready("")
	wg.Wait()
	return ctx.Err()
}

// connectOnDemand plays a node's workloads: each connects to every service
// the node uses, and every connect to a VIP the node does not translate yet
// is a miss. A connect to a service that does not exist yet (scale-up) is
// retried every two seconds, as a client would, until ctx is done.
func connectOnDemand(ctx context.Context, a *nodeagent.Agent, spec workload.Node, portsPerService int, log *slog.Logger) {
	port := workload.ServicePorts(portsPerService)[0]
	waiting := spec.Services
	for len(waiting) > 0 {
		var again []int
		for _, s := range waiting {
			miss := netip.AddrPortFrom(workload.ServiceVIP(s), port)
			_, ok, err := a.ReportMiss(ctx, miss)
			if err != nil && ctx.Err() == nil {
				log.Warn("report miss", "node", spec.Name, "vip", miss, "err", err)
			}
			if !ok {
				again = append(again, s)
			}
		}
		waiting = again
		if len(waiting) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// dialEtcd returns an etcd client with its own connection whose received
// bytes bc counts. It reconnects within a second when etcd comes back.
func dialEtcd(endpoints []string, bc *measure.ByteCounter) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		// The agent's main dials with etcddial, whose fixed flow-control
		// windows this client has too.
		DialOptions: append([]grpc.DialOption{
			grpc.WithStatsHandler(bc),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 5 * time.Second,
			}),
		}, etcddial.WindowOptions()...),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client %v: %w", endpoints, err)
	}
	return c, nil
}
