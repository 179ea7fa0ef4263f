package relay

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// pendingRoutes tracks since when each RDS route that listeners read has
// been missing. While one is missing, every changed service is held (its
// VIPs are unknown, docs/contract.md, "Unknown is not empty"); a route
// missing longer than Options.UpstreamLostTimeout is overdue: /readyz fails
// naming it, and it is logged once. It has its own lock so that readiness
// never waits for an update in handling.
type pendingRoutes struct {
	mu     sync.Mutex
	since  map[string]time.Time // route name → first seen missing
	logged map[string]bool      // overdue routes already logged
}

func newPendingRoutes() *pendingRoutes {
	return &pendingRoutes{since: map[string]time.Time{}, logged: map[string]bool{}}
}

// update records that exactly names are missing at now.
func (p *pendingRoutes) update(names []string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	missing := make(map[string]bool, len(names))
	for _, n := range names {
		missing[n] = true
		if _, ok := p.since[n]; !ok {
			p.since[n] = now
		}
	}
	for n := range p.since {
		if !missing[n] {
			delete(p.since, n)
			delete(p.logged, n)
		}
	}
}

// oldest returns the route missing longest and since when; ok is false
// when none is missing.
func (p *pendingRoutes) oldest() (name string, since time.Time, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n, t := range p.since {
		if !ok || t.Before(since) || (t.Equal(since) && n < name) {
			name, since, ok = n, t, true
		}
	}
	return name, since, ok
}

// count is the number of missing routes.
func (p *pendingRoutes) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.since)
}

// overdue returns the routes missing longer than bound at now that were not
// returned before: each is logged once.
func (p *pendingRoutes) overdue(now time.Time, bound time.Duration) map[string]time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out map[string]time.Duration
	for n, t := range p.since {
		if d := now.Sub(t); d > bound && !p.logged[n] {
			p.logged[n] = true
			if out == nil {
				out = map[string]time.Duration{}
			}
			out[n] = d
		}
	}
	return out
}

// watch logs one line per route that becomes overdue, until ctx is done.
func (p *pendingRoutes) watch(ctx context.Context, bound time.Duration, log *slog.Logger) {
	t := time.NewTicker(holdCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for name, d := range p.overdue(now, bound) {
				log.Warn("RDS route listeners read has not arrived: service updates are held (deletions still apply); /readyz fails",
					"route", name, "pending", d.Round(time.Second), "bound", bound)
			}
		}
	}
}
