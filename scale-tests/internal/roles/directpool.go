package roles

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/grpc"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/control"
	"github.com/meshrelay/meshrelay/scale-tests/internal/launch"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/workload"
)

// runDirectNodesRole runs the direct-mode nodes: one xDS stream to the
// simulated Istiod per node (SotW or delta, PoolConfig.XDSAPI), and a
// datapath written one entry per syscall.
func runDirectNodesRole(ctx context.Context, raw []byte, ctl *control.Server, log *slog.Logger, ready func(string)) error {
	cfg, err := launch.DecodeConfig[PoolConfig](raw)
	if err != nil {
		return err
	}
	p := newPool(cfg)
	go emulateSeparateHeaps(ctx, len(cfg.Nodes), log)
	var ctr directCounters
	var clients []directClient
	for i, spec := range cfg.Nodes {
		pn := p.addNode(i, spec, datapath.MemoryOptions{NoBatch: true, Logger: log})
		n := &directNode{
			table: nodemodel.NewTable(datapath.NewState()),
			dp:    pn.probe,
			log:   log.With("node", spec.Name),
			ctr:   &ctr,
		}
		if !cfg.AllServices {
			n.used = make(map[keyspace.Service]struct{}, len(spec.Services))
			for _, s := range spec.Services {
				n.used[workload.ServiceKey(s, cfg.Namespaces)] = struct{}{}
			}
		}
		c, index, err := newDirectClient(cmp.Or(cfg.XDSAPI, config.APISotW), cfg.Istiod, spec.Name,
			[]grpc.DialOption{grpc.WithStatsHandler(&p.bytes)}, log.With("node", spec.Name), n)
		if err != nil {
			return fmt.Errorf("node %s: %w", spec.Name, err)
		}
		n.index = index
		clients = append(clients, c)
	}
	p.totals = func(ps *PoolStats) {
		t := results.DirectTotals{
			Updates:         ctr.updates.Load(),
			TranslateErrors: ctr.translateErrors.Load(),
			Conflicts:       ctr.conflicts.Load(),
			ApplyErrors:     ctr.applyErrors.Load(),
		}
		for _, c := range clients {
			st := c.Stats()
			t.Responses += st.Responses
			t.NACKs += st.NACKs
			t.Streams += st.StreamsOpened
			t.ResourceBytes += st.BytesReceived
			if st.Complete {
				t.Complete++
			}
		}
		ps.Direct = &t
	}
	p.register(ctl)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { _ = c.Run(ctx) })
	}
	ready("")
	wg.Wait()
	return ctx.Err()
}
