package report

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Plot files written into the results directory.
const (
	PlotLag    = "lag-cdf.png"
	PlotCPU    = "cpu.png"
	PlotMemory = "memory.png"
)

// WritePlots draws the run's PNG plots: the propagation lag CDF per mode,
// CPU over time per mode and component, memory against the number of
// services in the mesh, and the kernel memlock of replayed nodes.
func WritePlots(dir string, sum *results.Summary) error {
	for _, f := range []func(string, *results.Summary) error{plotLagCDF, plotCPUOverTime, plotMemoryVsServices, plotKernelMemlock} {
		if err := f(dir, sum); err != nil {
			return err
		}
	}
	return nil
}

func plotLagCDF(dir string, sum *results.Summary) error {
	p := plot.New()
	p.Title.Text = "push → map propagation lag (CDF)"
	p.X.Label.Text = "lag (ms, log scale)"
	p.Y.Label.Text = "fraction of (change, node) pairs"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = false
	p.Legend.Left = true
	var lines []any
	for _, m := range sum.Modes {
		if len(m.Lag.CDF) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(m.Lag.CDF))
		for i, v := range m.Lag.CDF {
			xys[i] = plotter.XY{X: max(v, 0.1), Y: float64(i) / float64(len(m.Lag.CDF)-1)}
		}
		lines = append(lines, fmt.Sprintf("%s (p99 %.0f ms)", m.Mode, m.Lag.P99Ms), xys)
	}
	if len(lines) == 0 {
		return nil
	}
	if err := plotutil.AddLines(p, lines...); err != nil {
		return err
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, PlotLag))
}

// plotCPUOverTime draws one panel per mode: CPU cores each component
// used, per second.
func plotCPUOverTime(dir string, sum *results.Summary) error {
	var panels [][]*plot.Plot
	for _, m := range sum.Modes {
		p := plot.New()
		p.Title.Text = m.Mode + " mode: CPU by component (0 s = scenario start)"
		p.X.Label.Text = "seconds"
		p.Y.Label.Text = "CPU cores used"
		p.Y.Min = 0
		var lines []any
		for _, name := range sortedKeys(m.Series) {
			pts := m.Series[name]
			xys := make(plotter.XYs, 0, len(pts))
			for i := 1; i < len(pts); i++ {
				if dt := pts[i].T - pts[i-1].T; dt > 0 {
					xys = append(xys, plotter.XY{X: pts[i].T - m.ScenarioStart, Y: max(0, (pts[i].CPU-pts[i-1].CPU)/dt)})
				}
			}
			if len(xys) > 0 {
				lines = append(lines, name, xys)
			}
		}
		if len(lines) == 0 {
			continue
		}
		if err := plotutil.AddLines(p, lines...); err != nil {
			return err
		}
		p.Legend.Top = true
		panels = append(panels, []*plot.Plot{p})
	}
	if len(panels) == 0 {
		return nil
	}
	const width, height = 9 * vg.Inch, 3.5 * vg.Inch
	img := vgimg.New(width, height*vg.Length(len(panels)))
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2,
		PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2, PadY: vg.Millimeter * 6}
	canvases := plot.Align(panels, tiles, draw.New(img))
	for i := range panels {
		panels[i][0].Draw(canvases[i][0])
	}
	return savePNG(img, filepath.Join(dir, PlotCPU))
}

// plotMemoryVsServices draws every component's RSS against the number of
// services in the mesh; when that number did not change (every scenario
// but scale-up) it draws RSS over time instead. The Y axis is logarithmic:
// direct nodes use orders of magnitude more than the rest.
func plotMemoryVsServices(dir string, sum *results.Summary) error {
	varied := false
	first := -1
	for _, m := range sum.Modes {
		for _, pts := range m.Series {
			for _, pt := range pts {
				if pt.Services == 0 {
					continue
				}
				if first < 0 {
					first = pt.Services
				} else if pt.Services != first {
					varied = true
				}
			}
		}
	}
	p := plot.New()
	p.Y.Label.Text = "RSS (MiB, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	if varied {
		p.Title.Text = "resident memory vs services in the mesh"
		p.X.Label.Text = "services"
	} else {
		p.Title.Text = fmt.Sprintf("resident memory over time (%d services throughout)", max(first, 0))
		p.X.Label.Text = "seconds (0 = scenario start)"
	}
	var lines []any
	for _, m := range sum.Modes {
		for _, name := range sortedKeys(m.Series) {
			xys := make(plotter.XYs, 0, len(m.Series[name]))
			for _, pt := range m.Series[name] {
				if pt.RSS == 0 || (varied && pt.Services == 0) {
					continue
				}
				x := pt.T - m.ScenarioStart
				if varied {
					x = float64(pt.Services)
				}
				xys = append(xys, plotter.XY{X: x, Y: float64(pt.RSS) / (1 << 20)})
			}
			if len(xys) > 0 {
				lines = append(lines, m.Mode+": "+name, xys)
			}
		}
	}
	if len(lines) == 0 {
		return nil
	}
	if err := plotutil.AddLines(p, lines...); err != nil {
		return err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, PlotMemory))
}

func savePNG(img *vgimg.Canvas, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
