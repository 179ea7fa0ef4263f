package scenario

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/report"
	"github.com/meshrelay/meshrelay/scale-tests/internal/roles"
)

// showProgress prints one line per second about the running scenario
// until the returned function is called.
func (p *phase) showProgress(ctx context.Context, before phaseSnapshot) (stop func()) {
	if !p.cfg.Progress {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s, err := p.snapshotOf(ctx, roles.PoolStatsRequest{Light: true})
			if err != nil {
				continue
			}
			p.smp.SetServices(s.sim.Services)
			fmt.Fprintln(p.out, p.progressLine(before, s))
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// progressLine summarises what changed since before.
func (p *phase) progressLine(before, now phaseSnapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-6s %s %4.0fs | upstream: %d endpoint changes, %d pushes, %s sent",
		now.at.Format("15:04:05"), p.mode, p.cfg.Scenario, now.at.Sub(before.at).Seconds(),
		now.sim.Events-before.sim.Events, now.sim.Istiod.Pushes-before.sim.Istiod.Pushes,
		report.HumanBytes(float64(now.sim.Istiod.Bytes-before.sim.Istiod.Bytes)))
	if len(now.relays) > 0 {
		var puts, dels uint64
		for i := range now.relays {
			puts += now.relays[i].Sink.Puts - before.relays[i].Sink.Puts
			dels += now.relays[i].Sink.Deletes - before.relays[i].Sink.Deletes
		}
		fmt.Fprintf(&b, " | etcd: %d puts %d deletes", puts, dels)
	}
	fmt.Fprintf(&b, " | nodes: %d applies, %d map writes, %d syscalls, %s received",
		now.pool.Applies-before.pool.Applies,
		now.pool.Updates+now.pool.Deletes-before.pool.Updates-before.pool.Deletes,
		now.pool.Syscalls-before.pool.Syscalls,
		report.HumanBytes(float64(now.pool.BytesReceived-before.pool.BytesReceived)))
	b.WriteString(" | CPU s:")
	for _, name := range p.smp.Names() {
		fmt.Fprintf(&b, " %s %.1f", name, now.cpu[name]-before.cpu[name])
	}
	return b.String()
}
