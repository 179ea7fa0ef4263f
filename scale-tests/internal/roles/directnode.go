package roles

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
	"github.com/meshrelay/meshrelay/relay/translate"
	"github.com/meshrelay/meshrelay/relay/xds/sotw"
)

// directNode is a node agent of today's kind (Kmesh-like), built from
// meshrelay's own parts so that the comparison is honest rather than a
// straw man:
//
//   - its own SotW ADS stream to Istiod (xds/sotw), which decodes every
//     resource of every push, but skips resources whose bytes did not
//     change (content-hash dedupe, as Kmesh's ADS mode does);
//   - translate.Index, re-translating only the services a push touched;
//   - the node agent's model (nodemodel.Table), writing only the entries
//     that really changed;
//   - a datapath with one map syscall per entry (no batch operations) and
//     no coalescing: every push is applied as soon as it is decoded.
//
// What it lacks, by design, is what meshrelay adds: it decodes the whole
// mesh on every node, and it writes without batching.
type directNode struct {
	used  map[keyspace.Service]struct{} // nil: every service
	index *translate.Index
	table *nodemodel.Table
	dp    datapath.Datapath
	log   *slog.Logger
	ctr   *directCounters
}

// OnUpdate implements sotw.Handler: apply the update at once.
func (n *directNode) OnUpdate(ctx context.Context, u sotw.Update) {
	if u.TypeURL == "" {
		return // completeness only
	}
	n.ctr.updates.Add(1)
	dirty := n.index.Apply(u.TypeURL, u.Upserted, u.Removed)
	for _, k := range dirty {
		if n.used != nil {
			if _, ok := n.used[k]; !ok {
				continue
			}
		}
		svc, ok := n.index.Service(k)
		if !ok {
			n.table.Remove(k)
			continue
		}
		fes, err := nodemodel.Translate(svc)
		if err != nil {
			n.ctr.translateErrors.Add(1)
		}
		if conflicts := n.table.Set(k, fes); len(conflicts) > 0 {
			n.ctr.conflicts.Add(int64(len(conflicts)))
		}
	}
	cs := n.table.Pending()
	if cs.Empty() {
		return
	}
	if _, err := n.dp.Apply(ctx, cs); err != nil {
		n.ctr.applyErrors.Add(1)
		n.log.Warn("direct node apply", "err", err)
		if st, derr := n.dp.Dump(ctx); derr == nil {
			n.table.Reset(st)
		}
		return
	}
	n.table.Commit(cs)
}

// directCounters are the direct nodes' own counters, shared by every node
// of a pool.
type directCounters struct {
	updates, translateErrors, conflicts, applyErrors atomic.Int64
}
