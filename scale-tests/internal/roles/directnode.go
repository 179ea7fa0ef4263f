package roles

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
	"github.com/meshrelay/meshrelay/relay/translate"
	wdstranslate "github.com/meshrelay/meshrelay/relay/translate/workload"
	"github.com/meshrelay/meshrelay/relay/xds/delta"
	"github.com/meshrelay/meshrelay/relay/xds/sotw"
	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
)

// directNode is a node agent of today's kind, built from meshrelay's own
// parts so that the comparison is honest rather than a straw man. In the
// SotW API it is Kmesh's ADS mode:
//
//   - its own SotW ADS stream to Istiod (xds/sotw), which decodes every
//     resource of every push, but skips resources whose bytes did not
//     change (content-hash dedupe, as Kmesh's ADS mode does);
//   - translate.Index, re-translating only the services a push touched;
//
// in the workload API it is ztunnel or Kmesh's workload mode:
//
//   - its own delta ADS stream to Istiod (xds/delta) subscribed wildcard
//     to istio.workload.Address: every Service and Workload of the mesh,
//     each decoded (the client skips resources whose bytes did not change);
//   - the relay's workload translation (relay/translate/workload), which
//     re-translates only the services a Workload or Service change touched;
//
// and in both:
//
//   - the node agent's model (nodemodel.Table), writing only the entries
//     that really changed;
//   - a datapath with one map syscall per entry (no batch operations) and
//     no coalescing: every push is applied as soon as it is decoded.
//
// What it lacks, by design, is what meshrelay adds: it decodes the whole
// mesh on every node, and it writes without batching.
type directNode struct {
	used  map[keyspace.Service]struct{} // nil: every service
	index serviceIndex
	table *nodemodel.Table
	dp    datapath.Datapath
	log   *slog.Logger
	ctr   *directCounters
}

// serviceIndex is a direct node's translation of the whole mesh:
// translate.Index (SotW) or workload.Index (the workload API).
type serviceIndex interface {
	Apply(typeURL string, upserted map[string]proto.Message, removed []string) []keyspace.Service
	Service(k keyspace.Service) (*model.Service, bool)
}

// directClient is a direct node's xDS client: sotw.Client or delta.Client.
type directClient interface {
	Run(ctx context.Context) error
	Stats() sotw.Stats
}

// newDirectClient returns the xDS client and the empty translation of a
// direct node of the given API (config.APISotW or config.APIWorkload),
// feeding h. Every node is a pod of its own: its own connection and
// identity.
func newDirectClient(api, istiod, nodeName string, dial []grpc.DialOption, log *slog.Logger, h sotw.Handler) (directClient, serviceIndex, error) {
	getenv := func(namespace string) func(string) string {
		return func(k string) string {
			switch k {
			case "POD_NAME", "NODE_NAME":
				return nodeName
			case "POD_NAMESPACE":
				return namespace
			}
			return ""
		}
	}
	switch api {
	case config.APISotW:
		c, err := sotw.New(sotw.Options{Address: istiod, Node: sotw.NodeFromEnv(getenv("kmesh-system"), ""),
			DialOptions: dial, Logger: log}, h)
		return c, translate.NewIndex(), err
	case config.APIWorkload:
		c, err := delta.New(delta.Options{Address: istiod, Node: delta.NodeFromEnv(getenv("istio-system"), ""),
			DialOptions: dial, Logger: log}, h)
		return c, wdstranslate.NewIndex(), err
	}
	return nil, nil, fmt.Errorf("xds api %q: want %s or %s", api, config.APISotW, config.APIWorkload)
}

// OnUpdate implements sotw.Handler (and delta.Handler, the same
// interface): apply the update at once.
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
