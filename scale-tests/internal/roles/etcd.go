package roles

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/scale-tests/internal/control"
	"github.com/meshrelay/meshrelay/scale-tests/internal/launch"
)

// EtcdConfig configures the etcd role: an embedded etcd in its own
// process, so that its CPU and memory are measured apart from the relay's.
type EtcdConfig struct {
	// ClientURL is the loopback URL to serve clients on: empty for a free
	// port (reported when ready), the previous etcd's after a wipe.
	ClientURL string `json:"clientURL"`
	// Dir is the data directory; the harness removes it.
	Dir string `json:"dir"`
	// GOGC and MemoryLimit (bytes) set the process's garbage collector
	// (debug.SetGCPercent, debug.SetMemoryLimit) when positive: the
	// harness gives EtcdGOGC and EtcdMemoryLimit.
	GOGC        int   `json:"gogc,omitempty"`
	MemoryLimit int64 `json:"memoryLimit,omitempty"`
}

// The garbage collector settings the harness's etcd runs with: those
// docs/operations.md (Sizing) recommends at 1,000 nodes for the chart's
// etcd.gogc and etcd.goMemLimit. A collection that starts during a
// change's fan-out to every node's watch stream takes the CPU the fan-out
// needs; at GOGC 100 one did in a third of the 1,000-node runs, which
// doubled their p99 (scale-tests/README.md, Caveats).
const (
	EtcdGOGC        = 400
	EtcdMemoryLimit = 900 << 20
)

func runEtcdRole(ctx context.Context, raw []byte, ctl *control.Server, log *slog.Logger, ready func(string)) error {
	cfg, err := launch.DecodeConfig[EtcdConfig](raw)
	if err != nil {
		return err
	}
	if cfg.GOGC > 0 {
		debug.SetGCPercent(cfg.GOGC)
	}
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	// Pprof: a CPU profile of etcd under load is one curl away
	// (<clientURL>/debug/pprof/profile); loopback only, idle unless asked.
	srv, err := embedetcd.Start(ctx, embedetcd.Options{ClientURL: cfg.ClientURL, Dir: cfg.Dir, Logger: log, Pprof: true,
		Tick: embedetcd.LongTick}) // idle ticking would be charged to the scenario
	if err != nil {
		return err
	}
	defer srv.Close()
	control.Handle(ctl, "ping", func(ctx context.Context, _ struct{}) (struct{}, error) { return struct{}{}, nil })
	ready(srv.Endpoints()[0])
	<-ctx.Done()
	return ctx.Err()
}
