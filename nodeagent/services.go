package nodeagent

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
)

// ReportMiss reports that a socket connected to addr, which is no frontend
// of the datapath. With on-demand loading, an address inside the service
// CIDRs is resolved by the source (etcdsource.Source.Resolve: one read per
// /24 per negative TTL, under an in-flight bound and a read rate limit; a
// miss that cannot be read in time is dropped and counted) and its service is
// watched: its entries reach the datapath with the next flush after the
// source delivers it. It returns the service and whether it is loaded (or
// being loaded); an address outside the CIDRs, or of no service, returns
// false and no error. The bpf programs' misses are fed here; tests and the
// scale harness call it for the memory datapath.
func (a *Agent) ReportMiss(ctx context.Context, addr netip.AddrPort) (keyspace.Service, bool, error) {
	ip := addr.Addr().Unmap()
	if !a.onDemandEnabled() || !a.inServiceCIDRs(ip) {
		a.m.missesIgnored.Inc()
		return keyspace.Service{}, false, nil
	}
	a.mu.Lock()
	svc, known := a.load.known(ip)
	a.mu.Unlock()
	if known {
		a.m.missesKnown.Inc()
		return svc, true, nil
	}

	svc, ok, err := a.src.Resolve(ctx, ip)
	switch {
	case errors.Is(err, etcdsource.ErrBusy) || errors.Is(err, context.DeadlineExceeded):
		a.m.missesDropped.Inc()
		return keyspace.Service{}, false, err
	case err != nil:
		a.m.missErrors.Inc()
		return keyspace.Service{}, false, err
	case !ok:
		a.m.missesUnknown.Inc()
		return keyspace.Service{}, false, nil
	}
	if !a.loadOnDemand(svc, ip, "miss") {
		a.m.missesRefused.Inc()
		return svc, false, nil
	}
	a.m.missesLoaded.Inc()
	return svc, true, nil
}

// ReportUse records that a socket used the service of VIP ip now, which
// keeps an on-demand service from idle eviction. The bpf datapath reports
// usage through Programs.Usage instead; tests and the scale harness call
// it for the memory datapath.
func (a *Agent) ReportUse(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.load.use(ip.Unmap())
}

// loadOnDemand loads svc on demand (see loadSet.onDemand) and indexes vip
// for it. It reports false when it refused.
func (a *Agent) loadOnDemand(svc keyspace.Service, vip netip.Addr, why string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	res, eff := a.load.onDemand(svc, vip)
	if res.refused {
		a.m.refused.Inc()
		a.log.Warn("--max-services reached and no on-demand service to evict: not loading",
			"service", svc, "max_services", a.opts.MaxServices)
		return false
	}
	for _, e := range eff.evict {
		a.m.evictedLRU.Inc()
		a.log.Info("--max-services reached: evicting the least recently used on-demand service",
			"evicted", e.svc, "for", svc, "idle", e.idle.Round(time.Second))
	}
	if res.added {
		a.log.Debug("loading service on demand", "service", svc, "vip", vip, "why", why)
	}
	a.applyEffectsLocked(eff)
	return true
}

// applyEffectsLocked does what a loadSet decision asks: watch services
// (forgetting a queued removal of their entries) and evict others
// (unwatch, and queue the removal of their entries). Caller holds a.mu.
func (a *Agent) applyEffectsLocked(eff effects) {
	for _, svc := range eff.watch {
		delete(a.pending, svc)
		a.src.Watch(svc)
	}
	for _, e := range eff.evict {
		a.src.Unwatch(e.svc)
		a.pending[e.svc] = item{ev: etcdsource.Event{Service: e.svc}, drop: true}
	}
	if len(eff.evict) > 0 {
		kick(a.wake)
	}
}

// evictIdle unloads the on-demand services unused for Options.IdleTimeout.
// Usage comes from ReportMiss, ReportUse and the programs' usage map.
// Called by the main loop.
func (a *Agent) evictIdle() {
	var used map[keyspace.Service]time.Time
	if a.programs != nil {
		usage, err := a.programs.Usage()
		if err != nil {
			a.log.Warn("reading the programs' usage", "err", err)
		}
		used = make(map[keyspace.Service]time.Time)
		for id, t := range usage {
			if svc, ok := a.w.table.OwnerOfID(id); ok && t.After(used[svc]) {
				used[svc] = t
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	eff := a.load.idle(used)
	for _, e := range eff.evict {
		a.m.evictedIdle.Inc()
		a.log.Debug("unloading idle on-demand service", "service", e.svc, "idle", e.idle.Round(time.Second))
	}
	a.applyEffectsLocked(eff)
}

func (a *Agent) onDemandEnabled() bool { return a.opts.OnDemand && len(a.opts.ServiceCIDRs) > 0 }

func (a *Agent) inServiceCIDRs(ip netip.Addr) bool {
	for _, p := range a.opts.ServiceCIDRs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
