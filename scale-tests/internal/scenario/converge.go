package scenario

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/gate"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/roles"
)

// waitGate polls the correctness check until every node matches the
// truth, or timeout. It reports progress every few seconds.
func (p *phase) waitGate(ctx context.Context, timeout time.Duration, what string) (gate.Result, error) {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for {
		var res gate.Result
		if err := p.pool.Control.CallTimeout(ctx, 2*time.Minute, "check", struct {
			MaxDiffs int `json:"maxDiffs"`
		}{20}, &res); err != nil {
			return res, err
		}
		if res.Mismatched == 0 {
			return res, nil
		}
		if time.Now().After(deadline) {
			return res, &gateError{what: what, res: res}
		}
		if time.Since(last) >= 5*time.Second {
			last = time.Now()
			p.progress("%s: %s: %d of %d nodes not in sync yet", p.mode, what, res.Mismatched, res.Nodes)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return res, err
		}
	}
}

// gateError is a failed correctness gate.
type gateError struct {
	what string
	res  gate.Result
}

func (e *gateError) Error() string {
	msg := fmt.Sprintf("correctness gate failed after %s: %d of %d nodes differ from the simulator's truth; first differences:", e.what, e.res.Mismatched, e.res.Nodes)
	for _, d := range e.res.Diffs {
		msg += "\n  " + d
	}
	return msg
}

// converge waits until every node matches the final truth. It returns the
// time from the scenario's last push to the last datapath write, and the
// counters as they were just before the successful check: handing the
// pool the final truth (decoded there) and the gate's dumps of every node
// are the harness's work, which must not count as the scenario's.
func (p *phase) converge(ctx context.Context) (float64, phaseSnapshot, error) {
	deadline := time.Now().Add(p.cfg.ConvergeTimeout)
	last := time.Now()
	expected := false
	for {
		if err := p.waitQuiet(ctx, 1500*time.Millisecond, time.Until(deadline)); err != nil {
			return 0, phaseSnapshot{}, err
		}
		snap, err := p.snapshot(ctx)
		if err != nil {
			return 0, snap, err
		}
		if !expected {
			// The scenario's changes have all been made: the truth is final.
			if err := p.refreshTruth(ctx); err != nil {
				return 0, snap, err
			}
			if err := p.pool.Control.CallTimeout(ctx, time.Minute, "expect", p.truth, nil); err != nil {
				return 0, snap, err
			}
			expected = true
		}
		var res gate.Result
		if err := p.pool.Control.CallTimeout(ctx, 2*time.Minute, "check", struct {
			MaxDiffs int `json:"maxDiffs"`
		}{20}, &res); err != nil {
			return 0, snap, err
		}
		p.res.Gate = res
		if res.Mismatched == 0 {
			p.res.GateOK = true
			conv := 0.0
			if lastPush := snap.sim.LastPush; lastPush != 0 && snap.pool.LastApply > lastPush {
				conv = time.Duration(snap.pool.LastApply - lastPush).Seconds()
			}
			return conv, snap, nil
		}
		p.res.GateOK = false
		if time.Now().After(deadline) {
			return 0, snap, &gateError{what: "the scenario", res: res}
		}
		if time.Since(last) >= 5*time.Second {
			last = time.Now()
			p.progress("%s: %d of %d nodes not converged yet", p.mode, res.Mismatched, res.Nodes)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return 0, snap, err
		}
	}
}

// waitQuiet waits until no node has written its datapath for quiet, or
// timeout passes (then it returns without error: the gate decides).
func (p *phase) waitQuiet(ctx context.Context, quiet, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var st roles.PoolStats
		if err := p.pool.Control.Call(ctx, "stats", roles.PoolStatsRequest{Light: true}, &st); err != nil {
			return err
		}
		if time.Since(time.Unix(0, st.LastApply)) >= quiet {
			return nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// settle waits d, then until no node has written its datapath for 1.5 s
// (at most a minute), and returns the counters then: the cost of a
// disruption once the nodes have digested it.
func (p *phase) settle(ctx context.Context, d time.Duration) (phaseSnapshot, error) {
	if err := sleep(ctx, d); err != nil {
		return phaseSnapshot{}, err
	}
	if err := p.waitQuiet(ctx, 1500*time.Millisecond, time.Minute); err != nil {
		return phaseSnapshot{}, err
	}
	return p.snapshot(ctx)
}

// Thresholds of waitQuietCPU.
const (
	// quietRate is the CPU a component may use per second and count as
	// quiet: 5 % of a core (1,000 idle agents use under 1 %).
	quietRate = 0.05
	// quietTimeout bounds the wait.
	quietTimeout = 30 * time.Second
)

// waitQuietCPU waits, after the initial sync, until every component but
// the simulator used less than quietRate of a core over the last second,
// or quietTimeout passed, and returns how long it waited. The initial
// sync's work does not end with the nodes' last datapath write: etcd still
// syncs the watches created at revisions behind its head, and processes
// collect their garbage. That work is the initial sync's, and must not be
// counted as the scenario's (in either mode).
func (p *phase) waitQuietCPU(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	prev, at := p.cpuNow(), time.Now()
	for {
		if err := sleep(ctx, time.Second); err != nil {
			return 0, err
		}
		now, nowAt := p.cpuNow(), time.Now()
		secs := nowAt.Sub(at).Seconds()
		var busy []string
		for name, c := range now {
			if r := (c - prev[name]) / secs; name != results.CompSim && r > quietRate {
				busy = append(busy, fmt.Sprintf("%s %.2f", name, r))
			}
		}
		waited := time.Since(start)
		if len(busy) == 0 {
			if waited > 1500*time.Millisecond {
				p.progress("%s: components quiet %.1fs after the initial sync (that CPU counts as the sync's)", p.mode, waited.Seconds())
			}
			return waited, nil
		}
		if waited >= quietTimeout {
			slices.Sort(busy)
			p.progress("%s: still busy %.0fs after the initial sync (CPU s per s: %s); starting the scenario anyway", p.mode, waited.Seconds(), strings.Join(busy, ", "))
			return waited, nil
		}
		prev, at = now, nowAt
	}
}
