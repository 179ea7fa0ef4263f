package roles

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Garbage collection of a node pool. A pool runs many nodes in one Go
// process, whose heap they share; in a cluster each node agent is a process
// of its own. Go sets a process's heap goal at twice its live heap (GOGC
// 100) but at least 4 MiB, so N separate agents, each with a live heap
// under 2 MiB, would together collect only every N × 4 MiB allocated,
// while one shared heap at GOGC 100 collects every time it doubles, and
// each cycle marks every node's heap and goroutine stacks: at 1,000 relay
// nodes that was 40 % of the pool's CPU during a scenario.
//
// emulateSeparateHeaps sets the pool's GOGC so that its heap goal is what
// its nodes' separate goals would add up to, N × max(4 MiB, 2 × live/N),
// and never below GOGC 100: relay nodes (about 1 MiB live each) get the
// 4 MiB floor, direct nodes (a full xDS copy each) the plain GOGC 100. It
// re-reads the live heap every poolGCPeriod until ctx is done. An explicit
// GOGC in the environment is left alone.
const (
	poolGCPeriod   = 2 * time.Second
	processMinHeap = 4 << 20 // Go's minimum heap goal of a process at GOGC 100
	maxPoolGOGC    = 1000
)

func emulateSeparateHeaps(ctx context.Context, nodes int, log *slog.Logger) {
	if os.Getenv("GOGC") != "" || nodes <= 1 {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	last := 100
	t := time.NewTicker(poolGCPeriod)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if pct := separateHeapsGOGC(sample[0].Value.Uint64(), nodes); pct != last {
				debug.SetGCPercent(pct)
				log.Debug("pool GOGC set to emulate separate node processes", "gogc", pct, "nodes", nodes,
					"live_heap_mib", sample[0].Value.Uint64()>>20)
				last = pct
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// separateHeapsGOGC is the GOGC that puts a heap of live bytes shared by
// nodes at the goal of nodes separate processes (see emulateSeparateHeaps),
// rounded down to a multiple of 25 so that small changes of live do not
// reset it every period.
func separateHeapsGOGC(live uint64, nodes int) int {
	if live == 0 {
		return 100
	}
	per := max(processMinHeap, 2*live/uint64(nodes))
	goal := per * uint64(nodes)
	pct := int(100 * (goal - live) / live)
	return min(maxPoolGOGC, max(100, pct/25*25))
}
