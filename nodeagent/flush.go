package nodeagent

import (
	"context"
	"slices"

	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
)

// item is one queued change of a service: the latest event from the
// source, or an agent-made drop (eviction).
type item struct {
	ev   etcdsource.Event
	drop bool
}

// removal says whether it removes the service's entries.
func (it item) removal() bool { return it.drop || (it.ev.State == nil && !it.ev.Invalid) }

// drain moves the source's queued events into the agent's queue. The
// queue holds one item per service (latest wins), so it is bounded by the
// number of services however far the writer is behind.
func (a *Agent) drain() {
	evs := a.src.Take(0)
	if len(evs) == 0 {
		return
	}
	a.mu.Lock()
	for _, ev := range evs {
		if !a.load.watching(ev.Service) {
			continue // unloaded since the source queued it
		}
		if _, ok := a.pending[ev.Service]; ok {
			a.m.coalesced.Inc()
		}
		a.pending[ev.Service] = item{ev: ev}
	}
	a.m.events.Add(int64(len(evs)))
	a.mu.Unlock()
}

// queueDepth returns the number of services with a queued change, in
// the agent's queue or still in the source's (a service can be in both).
// Callers that hold a.mu use queuedLocked.
func (a *Agent) queueDepth() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.queuedLocked()
}

func (a *Agent) queuedLocked() int { return len(a.pending) + a.src.Queued() }

// flush applies every queued change: in chunks of about Options.Burst
// entries, each written as one change set.
func (a *Agent) flush(ctx context.Context) error {
	a.drain() // what arrived while the flush waited for its pace
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
		xr, yr := x.removal(), y.removal()
		if xr != yr {
			if xr {
				return -1
			}
			return 1
		}
		return compareServices(x.ev.Service, y.ev.Service)
	})
	a.m.flushes.Inc()
	var chunk []change
	for i, it := range items {
		if c, ok := a.applyItem(it); ok {
			chunk = append(chunk, c)
		}
		if a.w.full() || i == len(items)-1 {
			if err := a.writeChanges(ctx, chunk); err != nil {
				return err
			}
			chunk = chunk[:0]
		}
	}
	if retried := a.retryConflicts(); len(retried) > 0 {
		if err := a.writeChanges(ctx, retried); err != nil {
			return err
		}
	}
	a.publish()
	return nil
}

// applyItem applies one queued change to the table (not yet to the
// datapath), and returns it when it changed the table.
func (a *Agent) applyItem(it item) (change, bool) {
	svc := it.ev.Service
	table := a.w.table
	if it.drop {
		a.mu.Lock()
		drop := a.load.dropped(svc)
		a.mu.Unlock()
		if drop {
			table.Remove(svc)
		}
		return change{svc: svc, removed: true}, drop
	}
	if it.ev.Invalid {
		// Invalid values, nothing good queued before: keep what the
		// datapath holds, and do not wait for the service to be ready.
		a.mu.Lock()
		a.load.markAbsent(svc)
		a.mu.Unlock()
		return change{}, false
	}
	if it.ev.State == nil {
		a.mu.Lock()
		ok, unwatch := a.load.removed(svc)
		if unwatch {
			a.src.Unwatch(svc)
		}
		a.mu.Unlock()
		if ok {
			table.Remove(svc)
			a.m.removals.Inc()
			a.log.Debug("service removed", "service", svc, "revision", it.ev.Revision)
		}
		return change{svc: svc, removed: true}, ok
	}

	hash := it.ev.State.Hash()
	a.mu.Lock()
	changed, first := a.load.change(svc, hash)
	a.mu.Unlock()
	if !changed {
		return change{}, false
	}
	fes, err := nodemodel.Translate(it.ev.State)
	if err != nil {
		a.m.translateProblems.Inc()
		a.log.Debug("parts of a service cannot be translated", "service", svc, "err", err)
	}
	a.rememberHeld(svc, fes)
	conflicts := table.Set(svc, fes)
	if len(conflicts) > 0 {
		a.m.conflicts.Add(float64(len(conflicts)))
		a.log.Warn("frontends already owned by another service", "service", svc, "frontends", len(conflicts), "first", conflicts[0].String())
	}
	if !first {
		a.w.observeLater(newestObserved(it.ev.State))
	}
	a.mu.Lock()
	a.load.applied(svc, hash, it.ev.State, fes, len(conflicts) > 0)
	a.mu.Unlock()
	return change{svc: svc, fes: fes}, true
}

// retryConflicts sets again the services that had frontend keys owned by
// another service, which may have let them go in this flush. It returns
// the changes it made.
func (a *Agent) retryConflicts() []change {
	a.mu.Lock()
	retry := a.load.conflicts()
	a.mu.Unlock()
	var out []change
	for _, s := range retry {
		fes, _ := nodemodel.Translate(s.state)
		c := a.w.table.Set(s.key, fes)
		a.mu.Lock()
		a.load.setConflicts(s, len(c) > 0)
		a.mu.Unlock()
		out = append(out, change{svc: s.key, fes: fes})
	}
	return out
}

// newestObserved returns the newest observed_unix_nano of m's values.
func newestObserved(m *model.Service) int64 {
	t := m.Spec.GetObservedUnixNano()
	for _, sl := range m.Slices {
		t = max(t, sl.GetObservedUnixNano())
	}
	return t
}
