package etcdsink

import (
	"slices"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// deleteGuard is the mass-deletion guard (docs/contract.md, "Held
// deletions"): removals that would take more than Options.MaxDeleteFraction
// of the services in etcd (and at least Options.DeleteGuardMin of them) are
// held instead of written. Its maps are owned by the Run goroutine.
type deleteGuard struct {
	// held are removals not written because of the guard.
	held map[keyspace.Service]struct{}
	// since is when the current hold started.
	since time.Time
	// approved are removals released (by the operator or the hold time)
	// but not yet written: the guard lets them through.
	approved map[keyspace.Service]struct{}
	// passed are the removals the guard let through for the batch being
	// written. A service whose desired state became a removal after the
	// guard judged the batch (a Set while earlier transactions of the
	// batch were committing) is not in it: writing it would bypass the
	// guard, so it is left for the next batch.
	passed map[keyspace.Service]struct{}
}

// passedLocked reports whether writing svc's current desired state is
// allowed by the guard's judgement of this batch: it is no removal, or a
// removal the guard let through. Callers hold s.mu.
func (s *Sink) passedLocked(svc keyspace.Service) bool {
	if !s.removesLocked(svc) {
		return true
	}
	_, ok := s.guard.passed[svc]
	return ok
}

// removesLocked reports whether writing svc's desired state would remove it
// from what node agents can use: delete it, strip it of every VIP, or of
// every endpoint. Callers hold s.mu.
func (s *Sink) removesLocked(svc keyspace.Service) bool {
	w := s.written[svc]
	if w == nil || w.specHash == "" {
		return false
	}
	d, ok := s.desired[svc]
	switch {
	case !ok:
		return false
	case d.svc == nil:
		return true
	case len(w.vips) > 0 && len(d.svc.Spec.GetVips()) == 0:
		return true
	case len(w.slices) > 0 && len(d.svc.Slices) == 0:
		return true
	}
	return false
}

// guardDeletions filters the services of one batch through the guard;
// release says the operator released the held deletions. It returns the
// services to write, and whether the held set changed (the synced markers
// then need rewriting). The removals among the services returned are
// recorded in guard.passed: writeServices writes no other removal (see
// passedLocked).
func (s *Sink) guardDeletions(svcs []keyspace.Service, release bool) ([]keyspace.Service, bool) {
	g := &s.guard
	s.mu.Lock()
	defer s.mu.Unlock()

	for svc := range g.approved {
		if !s.removesLocked(svc) {
			delete(g.approved, svc)
		}
	}
	wasHeld := len(g.held)
	for svc := range g.held {
		if !s.removesLocked(svc) {
			delete(g.held, svc) // upstream has it back
		}
	}
	if len(g.held) > 0 && !s.lastComplete.Before(g.since.Add(s.opts.DeleteHoldTime)) {
		s.log.Warn("held deletions released: a fresh upstream stream still asks for them after the hold time",
			"services", len(g.held), "held_for", time.Since(g.since).Round(time.Second))
		release = true
	} else if release = release && len(g.held) > 0; release {
		s.log.Warn("held deletions released by the operator", "services", len(g.held))
	}

	var removals []keyspace.Service
	for _, svc := range svcs {
		if _, ok := g.approved[svc]; !ok && s.removesLocked(svc) {
			removals = append(removals, svc)
		}
	}
	if release {
		for svc := range g.held {
			g.approved[svc] = struct{}{}
			svcs = append(svcs, svc)
		}
		for _, svc := range removals {
			g.approved[svc] = struct{}{}
		}
		clear(g.held)
		return s.guardResult(svcs, wasHeld)
	}
	if len(removals) == 0 && len(g.held) == 0 {
		return s.guardResult(svcs, wasHeld)
	}

	total, removed := 0, 0
	for svc, w := range s.written {
		if w.specHash == "" {
			continue
		}
		total++
		if _, ok := g.approved[svc]; !ok && s.removesLocked(svc) {
			removed++
		}
	}
	if removed < s.opts.DeleteGuardMin || float64(removed) <= s.opts.MaxDeleteFraction*float64(total) {
		if len(g.held) > 0 {
			s.log.Info("held deletions released: upstream state no longer removes too many services",
				"services", len(g.held), "removed", removed, "in_etcd", total)
		}
		for svc := range g.held {
			svcs = append(svcs, svc)
		}
		clear(g.held)
		return s.guardResult(svcs, wasHeld)
	}

	if len(g.held) == 0 {
		g.since = time.Now()
		s.metrics.holds.Add(1)
		s.log.Warn("mass deletion held: the upstream state would remove too many services; keeping the last good state",
			"removed", removed, "in_etcd", total, "max_delete_fraction", s.opts.MaxDeleteFraction,
			"hold_time", s.opts.DeleteHoldTime, "release", "POST /release-deletions on the ops server")
	}
	for _, svc := range removals {
		g.held[svc] = struct{}{}
	}
	svcs = slices.DeleteFunc(svcs, func(svc keyspace.Service) bool {
		_, ok := g.held[svc]
		return ok
	})
	return s.guardResult(svcs, wasHeld)
}

func (s *Sink) guardResult(svcs []keyspace.Service, wasHeld int) ([]keyspace.Service, bool) {
	clear(s.guard.passed)
	for _, svc := range svcs {
		if s.removesLocked(svc) {
			s.guard.passed[svc] = struct{}{}
		}
	}
	n := len(s.guard.held)
	s.heldCount.Store(int64(n))
	if n == 0 {
		s.heldSince.Store(0)
	} else {
		s.heldSince.Store(s.guard.since.UnixNano())
	}
	slices.SortFunc(svcs, s.compareForWrite)
	return slices.Compact(svcs), (n == 0) != (wasHeld == 0) || n != wasHeld
}

// ReleaseDeletions releases the deletions the mass-deletion guard holds
// (of services and of authorization policies): they are written with the
// next batch. It returns how many were held.
func (s *Sink) ReleaseDeletions() int {
	n := int(s.heldCount.Load() + s.authzHeld.Load())
	s.releaseAsked.Store(true)
	s.queue.Mark(task{kind: kindWake})
	return n
}

// HeldDeletions is the number of services whose removal the guard holds.
func (s *Sink) HeldDeletions() int { return int(s.heldCount.Load()) }

// HoldDue reports whether held deletions have waited the hold time without
// the complete state of a fresh upstream stream since: the caller should
// open a fresh stream, whose complete state then applies or clears them.
func (s *Sink) HoldDue(now time.Time) bool {
	since := s.heldSince.Load()
	if a := s.authzHeldSince.Load(); a != 0 && (since == 0 || a < since) {
		since = a
	}
	if since == 0 {
		return false
	}
	due := time.Unix(0, since).Add(s.opts.DeleteHoldTime)
	s.mu.Lock()
	defer s.mu.Unlock()
	return !now.Before(due) && s.lastComplete.Before(due)
}
