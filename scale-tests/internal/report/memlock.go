package report

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// PlotMemlock is the plot of the kernel memlock of the replayed nodes
// against the entries they hold, written when some mode has kernel
// figures.
const PlotMemlock = "memlock.png"

// memlockRowName labels the map memory row by where its figures come
// from: the kernel (nodes replayed into BPF maps) or the memory
// datapath's model, with the reason the kernel figure is missing.
func memlockRowName(modes ...*results.Mode) string {
	var parts []string
	for _, m := range modes {
		if m == nil {
			continue
		}
		switch pn := m.PerNode; {
		case pn.MemlockSource == results.MemlockKernel:
			parts = append(parts, fmt.Sprintf("%s: kernel memlock, mean of %d nodes replayed into BPF maps", m.Mode, len(pn.MemlockNodes)))
		case pn.MemlockNote != "":
			parts = append(parts, fmt.Sprintf("%s: modelled, no kernel figure (%s)", m.Mode, pn.MemlockNote))
		default:
			parts = append(parts, m.Mode+": modelled")
		}
	}
	return "map memory per node (" + strings.Join(parts, "; ") + ")"
}

// hasKernelMemlock reports whether some mode has kernel memlock figures.
func hasKernelMemlock(sum *results.Summary) bool {
	for _, m := range sum.Modes {
		if len(m.PerNode.MemlockNodes) > 0 {
			return true
		}
	}
	return false
}

// plotKernelMemlock draws the kernel memlock of every replayed node
// against the map entries it holds, one series per mode.
func plotKernelMemlock(dir string, sum *results.Summary) error {
	if !hasKernelMemlock(sum) {
		return nil
	}
	p := plot.New()
	p.Title.Text = "map memory per node (kernel memlock of replayed nodes)"
	p.X.Label.Text = "map entries held"
	p.Y.Label.Text = "kernel memlock (MiB)"
	var series []any
	for _, m := range sum.Modes {
		if len(m.PerNode.MemlockNodes) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(m.PerNode.MemlockNodes))
		for i, nm := range m.PerNode.MemlockNodes {
			xys[i] = plotter.XY{X: float64(nm.Entries), Y: float64(nm.MemlockBytes) / (1 << 20)}
		}
		series = append(series, m.Mode, xys)
	}
	if err := plotutil.AddScatters(p, series...); err != nil {
		return err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, PlotMemlock))
}
