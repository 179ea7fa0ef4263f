package scenario

import (
	"context"
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/roles"
)

// fillKernelMemlock replaces the pool's modelled map memory per node by
// the kernel's memlock of a sample of its nodes (roles "memlock" verb).
// When the pool cannot measure it (not root), the modelled figure stays,
// marked as such, with the reason.
func (p *phase) fillKernelMemlock(ctx context.Context) {
	r := &p.res.PerNode
	r.MemlockSource = results.MemlockModel
	var res roles.MemlockResult
	if err := p.pool.Control.CallTimeout(ctx, 2*time.Minute, "memlock", roles.MemlockRequest{}, &res); err != nil {
		p.log.Warn("kernel memlock", "err", err)
		r.MemlockNote = err.Error()
		return
	}
	if len(res.Nodes) == 0 {
		r.MemlockNote = res.Reason
		return
	}
	var sum float64
	for _, nm := range res.Nodes {
		sum += float64(nm.MemlockBytes)
	}
	r.MemlockBytes = sum / float64(len(res.Nodes))
	r.MemlockSource = results.MemlockKernel
	r.MemlockNodes = res.Nodes
	r.MemlockNote = ""
}
