package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/launch"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
	"github.com/meshrelay/meshrelay/scale-tests/internal/report"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/workload"
)

// Run runs every mode of cfg and writes the results directory. It
// returns the summary even when a mode failed (summary.OK is then false).
func Run(ctx context.Context, cfg *config.Config, exe string, out io.Writer, log *slog.Logger) (*results.Summary, error) {
	if err := os.MkdirAll(filepath.Join(cfg.Out, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	tmp, err := os.MkdirTemp(tempRoot(), "meshrelay-scale-")
	if err != nil {
		return nil, fmt.Errorf("scratch directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	sum := &results.Summary{
		Name:    filepath.Base(cfg.Out),
		Command: cfg.Command,
		Started: time.Now(),
		Machine: measure.DescribeMachine(),
		Config:  *cfg,
	}
	nodes := workload.Assign(cfg.Seed, cfg.Nodes, cfg.Services, cfg.ServicesPerNode, cfg.ZipfS)
	sum.Workload = workload.UsageOf(nodes)
	fmt.Fprintf(out, "meshrelay scale test: %s, %d services × %d endpoints, %d nodes × %d services (Zipf s=%.2f: the most used service is on %d nodes, the median used one on %d), results in %s\n",
		cfg.Scenario, cfg.Services, cfg.EndpointsPerService, cfg.Nodes, cfg.ServicesPerNode, cfg.ZipfS,
		sum.Workload.Max, sum.Workload.Median, cfg.Out)

	l := launch.NewLauncher(exe, filepath.Join(cfg.Out, "logs"), log)
	defer l.StopAll(5 * time.Second)
	for _, mode := range cfg.Modes {
		res := &results.Mode{Mode: mode, Nodes: len(nodes)}
		p := &phase{cfg: cfg, mode: mode, nodes: nodes, l: l, log: log, out: out, tmp: tmp,
			cluster: clusterID(cfg), smp: measure.NewSampler(), res: res}
		if mode == config.ModeDirect {
			n, note := directNodes(cfg)
			p.nodes = nodes[:n]
			res.Nodes, res.Note = n, note
			if note != "" {
				fmt.Fprintf(out, "direct: %s\n", note)
			}
			// A safety net against running the machine out of memory,
			// set well above the pool's expected heap (twice its live
			// data): a limit near the heap would make its garbage
			// collector run back to back and slow the direct nodes down
			// for a reason of the harness's making.
			p.poolEnv = []string{fmt.Sprintf("GOMEMLIMIT=%dMiB", measure.MemInfo("MemAvailable")*9/10>>20)}
		}
		sum.Modes = append(sum.Modes, res)
		err := p.Run(ctx)
		if err != nil {
			res.Failed, _, _ = strings.Cut(err.Error(), "\n")
			sum.Errors = append(sum.Errors, fmt.Sprintf("%s mode: %v", mode, err))
			fmt.Fprintf(out, "%s mode FAILED: %v\n", mode, err)
			var ge *gateError
			if !errors.As(err, &ge) {
				break // a component died or the run was interrupted: stop here
			}
		}
	}
	sum.Seconds = time.Since(sum.Started).Seconds()
	sum.OK = len(sum.Errors) == 0
	if err := report.Publish(cfg.Out, sum); err != nil {
		return sum, err
	}
	return sum, nil
}

// directNodes returns how many direct nodes to run, and why it is fewer
// than asked if it is.
func directNodes(cfg *config.Config) (int, string) {
	return fitDirectNodes(cfg, measure.MemInfo("MemAvailable"))
}

// fitDirectNodes is directNodes with avail bytes of available memory (0:
// unknown, no cap).
func fitDirectNodes(cfg *config.Config, avail int64) (int, string) {
	want := cfg.Nodes
	if cfg.DirectNodes > 0 {
		want = min(cfg.DirectNodes, cfg.Nodes)
	}
	perNode := int64(cfg.Services) * directBytesPerService(cfg.API()) * int64(max(1, cfg.EndpointsPerService/5))
	if avail <= 0 {
		return want, ""
	}
	// A third of what is free, so that the pool's heap (twice its live
	// data between collections) stays well below its memory limit.
	fit := int(avail * 3 / 10 / perNode)
	if cfg.DirectNodes == 0 && fit < want {
		return max(fit, 1), fmt.Sprintf("ran %d of %d nodes: each direct node holds the whole mesh decoded (~%s for %d services) and %d would not fit in this machine's %s of available memory; per-node figures are measured on these %d, Istiod's totals for %d nodes are %d/%d times theirs",
			max(fit, 1), cfg.Nodes, report.HumanBytes(float64(perNode)), cfg.Services, cfg.Nodes, report.HumanBytes(float64(avail)), max(fit, 1), cfg.Nodes, cfg.Nodes, max(fit, 1))
	}
	if want < cfg.Nodes {
		return want, fmt.Sprintf("ran %d of %d nodes (--direct-nodes); per-node figures are measured on these", want, cfg.Nodes)
	}
	return want, ""
}

// clusterID is the keyspace cluster id: the default with the harness's
// own etcd, a fresh one on a shared etcd so runs do not mix.
func clusterID(cfg *config.Config) string {
	if len(cfg.EtcdEndpoints) == 0 {
		return ""
	}
	return fmt.Sprintf("scale-%d", time.Now().Unix())
}

// tempRoot is where etcd data goes: tmpfs when there is one.
func tempRoot() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}
