package nodeagent

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
)

// maxGarbageAge bounds how long unreferenced entries wait to be deleted;
// garbageDelay is the quiet time after which they are deleted on their own.
const (
	maxGarbageAge = time.Second
	garbageDelay  = 250 * time.Millisecond
)

// writer writes the pending change set of a table into the datapath,
// paced by two token buckets (map entries and change sets per second),
// deferring the deletes of unreferenced entries to a later change set. A
// failed Apply resets the table to a fresh dump and is returned; the agent
// isolates the failing service (parking.go). It is used by one goroutine
// (the agent's main loop).
type writer struct {
	dp    datapath.Datapath
	table *nodemodel.Table
	log   *slog.Logger
	m     *metrics
	now   func() time.Time
	burst int

	entries *rate.Limiter // map entries per second
	applies *rate.Limiter // change sets per second

	// garbageSince is when unreferenced entries were first left in the
	// datapath for a later change set (zero when none are).
	garbageSince time.Time
	// lagWait are the newest observed_unix_nano of the services applied
	// in the current chunk, whose lag is observed at commit.
	lagWait []int64
	// lastProgress is when a write last succeeded (unix nanoseconds);
	// read by the health check from other goroutines.
	lastProgress atomic.Int64
}

func newWriter(dp datapath.Datapath, table *nodemodel.Table, opts Options, m *metrics) *writer {
	w := &writer{
		dp: dp, table: table, log: opts.Logger, m: m, now: opts.Now, burst: opts.Burst,
		entries: rate.NewLimiter(rate.Limit(opts.MaxMapOpsPerSecond), opts.Burst),
		applies: rate.NewLimiter(rate.Limit(opts.MaxAppliesPerSecond), max(1, int(opts.MaxAppliesPerSecond/10))),
	}
	w.progress()
	return w
}

// full says whether the table's pending change set is a chunk to write.
func (w *writer) full() bool { return w.table.PendingSize() >= w.burst }

// hasGarbage says whether unreferenced entries wait for a later change set.
func (w *writer) hasGarbage() bool { return !w.garbageSince.IsZero() }

// observeLater records a service's newest observed_unix_nano; its lag is
// observed when the chunk it is in has been written.
func (w *writer) observeLater(observed int64) { w.lagWait = append(w.lagWait, observed) }

// write applies the table's pending change set to the datapath, after the
// token buckets allow it. With cleanup, deletes of unreferenced entries are
// not deferred (after a failure, they free room in full maps). When the Apply fails, the datapath is dumped
// again and the table reset to what it holds (Apply is idempotent), and
// the error is returned: the caller isolates the failing service
// (parking.go). It returns ctx.Err() when ctx is done.
func (w *writer) write(ctx context.Context, cleanup bool) error {
	cs := w.table.Pending()
	if cs.Empty() {
		w.table.Commit(cs)
		w.garbageSince = time.Time{}
		w.m.garbage.Set(0)
		w.observeLag()
		return nil
	}
	// Deletes of entries nothing references any more wait for a change
	// set that does not also upsert into their map (at most
	// maxGarbageAge, or a garbage-only one after a quiet moment), so
	// that a change set writes each map with one syscall.
	now, garbage := datapath.SplitGarbage(cs)
	overdue := !w.garbageSince.IsZero() && w.now().Sub(w.garbageSince) >= maxGarbageAge
	split := !garbage.Empty() && (garbage.Len() >= w.burst || overdue || cleanup)
	if split {
		now, garbage = cs, datapath.ChangeSet{} // written as two change sets by apply
	}
	err := w.apply(ctx, now, split)
	if err == nil {
		w.table.Commit(now)
		w.m.garbage.Set(float64(garbage.Len()))
		switch {
		case !garbage.Empty():
			w.table.Retain(garbage)
			if w.garbageSince.IsZero() {
				w.garbageSince = w.now()
			}
		default:
			w.garbageSince = time.Time{}
		}
		w.observeLag()
		w.progress()
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	w.m.applyErrors.Inc()
	w.log.Warn("datapath apply failed; re-reading the datapath", "entries", now.Len(), "err", err)
	if dump, derr := w.dp.Dump(ctx); derr == nil {
		w.table.Reset(dump)
	} else {
		w.log.Error("datapath dump failed", "err", derr)
		w.table.Reset(w.table.Applied()) // compare everything next time
	}
	w.lagWait = w.lagWait[:0]
	return fmt.Errorf("apply %d entries: %w", now.Len(), err)
}

// progress records that a change set was written.
func (w *writer) progress() {
	w.lastProgress.Store(w.now().UnixNano())
}

// apply writes cs through the token buckets. With split, a change set
// that both upserts into and deletes from one map is written as two: the
// upserts (with the removals of frontends), then the unreferenced deletes.
func (w *writer) apply(ctx context.Context, cs datapath.ChangeSet, split bool) error {
	if split {
		now, garbage := datapath.SplitGarbage(cs)
		if err := w.apply(ctx, now, false); err != nil {
			return err
		}
		cs = garbage
	}
	n := cs.Len()
	start := time.Now()
	for left := n; left > 0; {
		k := min(left, w.burst)
		if err := w.entries.WaitN(ctx, k); err != nil {
			return ctxErr(ctx, err)
		}
		left -= k
	}
	if err := w.applies.Wait(ctx); err != nil {
		return ctxErr(ctx, err)
	}
	w.m.throttled.Add(int64(time.Since(start)))
	st, err := w.dp.Apply(ctx, cs)
	w.m.applies.Inc()
	w.m.updates.Add(float64(st.Updates))
	w.m.deletes.Add(float64(st.Deletes))
	w.m.syscalls.Add(float64(st.Syscalls))
	w.m.batch.Observe(float64(n))
	return err
}

// observeLag records the propagation lag of the services just applied.
func (w *writer) observeLag() {
	if len(w.lagWait) == 0 {
		return
	}
	now := w.now().UnixNano()
	for _, observed := range w.lagWait {
		if observed > 0 {
			w.m.lag.Observe(float64(max(now-observed, 0)) / 1e9)
		}
	}
	w.lagWait = w.lagWait[:0]
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
