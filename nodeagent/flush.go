package nodeagent

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/meshrelay/meshrelay/internal/backoff"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
)

// pull moves the source's events into the agent's queue until ctx is done.
// The queue holds one item per service (latest wins), so it is bounded by
// the number of services however far the writer is behind.
func (a *Agent) pull(ctx context.Context) {
	for {
		evs, err := a.src.Next(ctx, 0)
		if err != nil {
			return // ctx done
		}
		a.mu.Lock()
		for _, ev := range evs {
			s := a.services[ev.Service]
			if s == nil || !s.watched {
				continue // unloaded since the source queued it
			}
			if _, ok := a.pending[ev.Service]; ok {
				a.stats.coalesced.Add(1)
			}
			a.pending[ev.Service] = item{ev: ev}
		}
		a.stats.events.Add(int64(len(evs)))
		a.mu.Unlock()
		kick(a.wake)
	}
}

// queueDepth returns the number of services with a queued change.
func (a *Agent) queueDepth() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// flush applies every queued change: in chunks of about Options.Burst
// entries, each written as one change set.
func (a *Agent) flush(ctx context.Context) error {
	a.mu.Lock()
	items := make([]item, 0, len(a.pending))
	for _, it := range a.pending {
		items = append(items, it)
	}
	clear(a.pending)
	a.mu.Unlock()
	// Removals first: within a chunk ChangeSet's order already frees
	// entries before it adds; across chunks this does.
	slices.SortFunc(items, func(x, y item) int {
		xr, yr := x.drop || x.ev.State == nil, y.drop || y.ev.State == nil
		if xr != yr {
			if xr {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(x.ev.Service.Namespace, y.ev.Service.Namespace), cmp.Compare(x.ev.Service.Name, y.ev.Service.Name))
	})
	a.stats.flushes.Add(1)
	for i, it := range items {
		a.applyItem(it)
		if a.table.PendingSize() >= a.opts.Burst || i == len(items)-1 {
			if err := a.write(ctx); err != nil {
				return err
			}
		}
	}
	if a.retryConflicts() {
		if err := a.write(ctx); err != nil {
			return err
		}
	}
	a.publish()
	return nil
}

// applyItem applies one queued change to the table (not yet to the datapath).
func (a *Agent) applyItem(it item) {
	svc := it.ev.Service
	a.mu.Lock()
	s := a.services[svc]
	switch {
	case s == nil:
		a.mu.Unlock()
		return
	case it.drop:
		if s.watched {
			a.mu.Unlock()
			return // loaded again meanwhile
		}
		a.forgetLocked(s)
		a.mu.Unlock()
		a.table.Remove(svc)
		return
	case !s.watched:
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()

	if it.ev.State == nil {
		a.table.Remove(svc)
		a.mu.Lock()
		a.stats.removals.Add(1)
		s.delivered, s.hash, s.state = true, "", nil
		a.setConflictsLocked(s, false)
		a.indexVIPsLocked(s, nil)
		if !s.declared {
			// Gone upstream: an on-demand or namespace service is
			// unloaded (the namespace watch loads it again should it
			// return); a declared one stays watched.
			s.watched = false
			a.src.Unwatch(svc)
			a.forgetLocked(s)
		}
		a.mu.Unlock()
		a.log.Debug("service removed", "service", svc, "revision", it.ev.Revision)
		return
	}

	hash := it.ev.State.Hash()
	a.mu.Lock()
	unchanged := s.delivered && s.hash == hash
	first := s.state == nil
	a.mu.Unlock()
	if unchanged {
		return
	}
	fes, err := nodemodel.Translate(it.ev.State)
	if err != nil {
		a.stats.translateProblems.Add(1)
		a.log.Debug("parts of a service cannot be translated", "service", svc, "err", err)
	}
	conflicts := a.table.Set(svc, fes)
	if len(conflicts) > 0 {
		a.stats.conflicts.Add(int64(len(conflicts)))
		a.log.Warn("frontends already owned by another service", "service", svc, "frontends", len(conflicts), "first", conflicts[0].String())
	}
	if !first {
		a.lagWait = append(a.lagWait, lagSample{observed: newestObserved(it.ev.State)})
	}
	a.mu.Lock()
	s.delivered, s.hash, s.state = true, hash, it.ev.State
	a.setConflictsLocked(s, len(conflicts) > 0)
	a.indexVIPsLocked(s, fes)
	a.mu.Unlock()
}

// retryConflicts sets again the services that had frontend keys owned by
// another service, which may have let them go in this flush. It reports
// whether it changed anything.
func (a *Agent) retryConflicts() bool {
	a.mu.Lock()
	var retry []*service
	for s := range a.conflicted {
		if s.watched && s.state != nil {
			retry = append(retry, s)
		}
	}
	a.mu.Unlock()
	for _, s := range retry {
		fes, _ := nodemodel.Translate(s.state)
		c := a.table.Set(s.key, fes)
		a.mu.Lock()
		a.setConflictsLocked(s, len(c) > 0)
		a.mu.Unlock()
	}
	return len(retry) > 0
}

// setConflictsLocked records whether some of s's frontends are owned by
// another service.
func (a *Agent) setConflictsLocked(s *service, c bool) {
	if c {
		a.conflicted[s] = struct{}{}
	} else {
		delete(a.conflicted, s)
	}
}

// write applies the table's pending change set to the datapath, after the
// token buckets allow it. A failed Apply is retried with backoff over a
// fresh dump (Apply is idempotent) until it succeeds or ctx is done.
func (a *Agent) write(ctx context.Context) error {
	var retry *backoff.Backoff
	for {
		cs := a.table.Pending()
		if cs.Empty() {
			a.table.Commit(cs)
			a.garbageSince = time.Time{}
			a.stats.garbage.Store(0)
			a.observeLag()
			return nil
		}
		// Deletes of entries nothing references any more wait for a change
		// set that does not also upsert into their map (at most
		// maxGarbageAge, or a garbage-only one after a quiet moment), so
		// that a change set writes each map with one syscall.
		now, garbage := datapath.SplitGarbage(cs)
		overdue := !a.garbageSince.IsZero() && a.opts.Now().Sub(a.garbageSince) >= maxGarbageAge
		split := !garbage.Empty() && (garbage.Len() >= a.opts.Burst || overdue)
		if split {
			now, garbage = cs, datapath.ChangeSet{} // written as two change sets by apply
		}
		err := a.apply(ctx, now, split)
		if err == nil {
			a.table.Commit(now)
			a.stats.garbage.Store(int64(garbage.Len()))
			switch {
			case !garbage.Empty():
				a.table.Retain(garbage)
				if a.garbageSince.IsZero() {
					a.garbageSince = a.opts.Now()
				}
			default:
				a.garbageSince = time.Time{}
			}
			a.observeLag()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.stats.applyErrors.Add(1)
		a.log.Error("datapath apply failed; re-reading the datapath and retrying", "entries", now.Len(), "err", err)
		if dump, derr := a.dp.Dump(ctx); derr == nil {
			a.table.Reset(dump)
		} else {
			a.log.Error("datapath dump failed", "err", derr)
		}
		if retry == nil {
			retry = backoff.New(backoff.Options{Max: 5 * time.Second})
		}
		if !retry.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// maxGarbageAge bounds how long unreferenced entries wait to be deleted;
// garbageDelay is the quiet time after which they are deleted on their own.
const (
	maxGarbageAge = time.Second
	garbageDelay  = 250 * time.Millisecond
)

// apply writes cs through the token buckets. With split, a change set
// that both upserts into and deletes from one map is written as two: the
// upserts (with the removals of frontends), then the unreferenced deletes.
func (a *Agent) apply(ctx context.Context, cs datapath.ChangeSet, split bool) error {
	if split {
		now, garbage := datapath.SplitGarbage(cs)
		if err := a.apply(ctx, now, false); err != nil {
			return err
		}
		cs = garbage
	}
	n := cs.Len()
	start := time.Now()
	for left := n; left > 0; {
		k := min(left, a.opts.Burst)
		if err := a.entries.WaitN(ctx, k); err != nil {
			return ctxErr(ctx, err)
		}
		left -= k
	}
	if err := a.applies.Wait(ctx); err != nil {
		return ctxErr(ctx, err)
	}
	a.stats.throttledNanos.Add(int64(time.Since(start)))
	st, err := a.dp.Apply(ctx, cs)
	a.stats.applies.Add(1)
	a.stats.updates.Add(int64(st.Updates))
	a.stats.deletes.Add(int64(st.Deletes))
	a.stats.syscalls.Add(int64(st.Syscalls))
	a.batch.observe(float64(n))
	return err
}

// observeLag records the propagation lag of the services just applied.
func (a *Agent) observeLag() {
	if len(a.lagWait) == 0 {
		return
	}
	now := a.opts.Now().UnixNano()
	for _, l := range a.lagWait {
		if l.observed > 0 {
			a.lag.observe(float64(max(now-l.observed, 0)) / 1e9)
		}
	}
	a.lagWait = a.lagWait[:0]
}

// newestObserved returns the newest observed_unix_nano of m's values.
func newestObserved(m *model.Service) int64 {
	t := m.Spec.GetObservedUnixNano()
	for _, sl := range m.Slices {
		t = max(t, sl.GetObservedUnixNano())
	}
	return t
}

// indexVIPsLocked makes the VIPs of fes point at s in Agent.vips.
func (a *Agent) indexVIPsLocked(s *service, fes []nodemodel.Frontend) {
	for _, ip := range s.vips {
		if a.vips[ip] == s.key {
			delete(a.vips, ip)
		}
	}
	s.vips = s.vips[:0]
	for _, fe := range fes {
		ip := fe.Key.AddrPort().Addr()
		if len(s.vips) == 0 || s.vips[len(s.vips)-1] != ip {
			s.vips = append(s.vips, ip)
		}
	}
	s.vips = slices.Compact(s.vips)
	for _, ip := range s.vips {
		a.vips[ip] = s.key
	}
}

// forgetLocked drops the record of an unwatched service.
func (a *Agent) forgetLocked(s *service) {
	a.indexVIPsLocked(s, nil)
	delete(a.conflicted, s)
	if a.services[s.key] == s {
		delete(a.services, s.key)
	}
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
