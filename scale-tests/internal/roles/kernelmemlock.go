package roles

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
)

// The pool's nodes run on the memory datapath, whose memlock is a model.
// The "memlock" verb measures the kernel's figure instead: it replays a
// sample of nodes' states into real BPF maps (one node at a time, in a
// temporary pin directory on bpffs), reads every map's MapInfo.Memlock,
// and removes the maps again.

// MemlockRequest asks for the kernel memlock of Nodes nodes, spread evenly
// over the pool (DefaultMemlockNodes when 0).
type MemlockRequest struct {
	Nodes int `json:"nodes"`
}

// DefaultMemlockNodes is the sample size when a MemlockRequest gives none.
const DefaultMemlockNodes = 8

// MemlockResult is the kernel memlock of the replayed nodes, or, when
// none could be replayed, Reason.
type MemlockResult struct {
	Nodes  []results.NodeMemlock `json:"nodes,omitempty"`
	Reason string                `json:"reason,omitempty"`
}

// kernelMemlock replays req.Nodes nodes' datapath states into BPF maps and
// returns their kernel memlock. Not being root is no error: the result
// then has no nodes and says why.
func (p *pool) kernelMemlock(ctx context.Context, req MemlockRequest) (MemlockResult, error) {
	if os.Geteuid() != 0 {
		return MemlockResult{Reason: "not root: BPF maps need CAP_BPF and CAP_SYS_ADMIN"}, nil
	}
	want := req.Nodes
	if want <= 0 {
		want = DefaultMemlockNodes
	}
	want = min(want, len(p.nodes))
	var res MemlockResult
	for i := range want {
		n := p.nodes[i*len(p.nodes)/want]
		st, err := n.mem.Dump(ctx)
		if err != nil {
			return res, fmt.Errorf("dump %s: %w", n.spec.Name, err)
		}
		memlock, err := replayMemlock(ctx, st, cmp.Or(p.memlockPins, datapath.BPFFSMount))
		if err != nil {
			if len(res.Nodes) == 0 {
				return MemlockResult{Reason: err.Error()}, nil
			}
			return res, fmt.Errorf("replay %s: %w", n.spec.Name, err)
		}
		res.Nodes = append(res.Nodes, results.NodeMemlock{Node: n.spec.Name, Entries: st.Len(), MemlockBytes: memlock})
	}
	return res, nil
}

// replayMemlock writes st into the maps of a fresh BPF datapath pinned in
// a temporary directory under parent, on bpffs, and returns the sum of the
// kernel's memlock figures of all its maps. The maps are unpinned before
// it returns.
func replayMemlock(ctx context.Context, st datapath.State, parent string) (uint64, error) {
	dir, err := os.MkdirTemp(parent, "meshrelay-scale-memlock-")
	if err != nil {
		return 0, fmt.Errorf("create pin directory in %s: %w", parent, err)
	}
	defer os.RemoveAll(dir)
	defer datapath.Uninstall(dir)
	b, err := datapath.OpenBPF(datapath.BPFOptions{PinPath: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, fmt.Errorf("open bpf datapath in %s: %w", dir, err)
	}
	defer b.Close()
	if _, err := b.Apply(ctx, datapath.DiffStates(datapath.NewState(), st)); err != nil {
		return 0, fmt.Errorf("apply %d entries: %w", st.Len(), err)
	}
	var total uint64
	for _, m := range b.Stats().Maps {
		total += m.MemlockBytes
	}
	if total == 0 {
		return 0, fmt.Errorf("the kernel reports no memlock for the maps in %s (Linux < 6.4?)", dir)
	}
	return total, nil
}
