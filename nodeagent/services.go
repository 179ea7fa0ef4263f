package nodeagent

import (
	"context"
	"net/netip"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
)

// ReportMiss reports that a socket connected to addr, which is no frontend
// of the datapath. With on-demand loading, an address inside the service
// CIDRs is resolved with one read of vips/<ip> (unknown addresses are
// remembered by the source for its negative TTL) and its service is
// watched: its entries reach the datapath with the next flush after the
// source delivers it. It returns the service and whether it is loaded (or
// being loaded); an address outside the CIDRs, or of no service, returns
// false and no error. The bpf programs' misses are fed here; tests and the
// scale harness call it for the memory datapath.
func (a *Agent) ReportMiss(ctx context.Context, addr netip.AddrPort) (keyspace.Service, bool, error) {
	ip := addr.Addr().Unmap()
	a.stats.misses.Add(1)
	if !a.onDemandEnabled() || !a.inServiceCIDRs(ip) {
		a.stats.missesIgnored.Add(1)
		return keyspace.Service{}, false, nil
	}
	a.mu.Lock()
	if svc, ok := a.vips[ip]; ok {
		if s := a.services[svc]; s != nil && s.watched {
			s.lastUsed = a.opts.Now()
			a.mu.Unlock()
			a.stats.missesKnown.Add(1)
			return svc, true, nil
		}
	}
	a.mu.Unlock()

	svc, ok, err := a.src.Resolve(ctx, ip)
	switch {
	case err != nil:
		a.stats.missErrors.Add(1)
		return keyspace.Service{}, false, err
	case !ok:
		a.stats.missesUnknown.Add(1)
		return keyspace.Service{}, false, nil
	}
	if !a.load(svc, ip, "miss") {
		return svc, false, nil
	}
	a.stats.missesLoaded.Add(1)
	return svc, true, nil
}

// ReportUse records that a socket used the service of VIP ip now, which
// keeps an on-demand service from idle eviction. The bpf datapath reports
// usage through Programs.Usage instead; tests and the scale harness call
// it for the memory datapath.
func (a *Agent) ReportUse(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if svc, ok := a.vips[ip.Unmap()]; ok {
		if s := a.services[svc]; s != nil {
			s.lastUsed = a.opts.Now()
		}
	}
}

// load watches svc as an on-demand service, making room under
// Options.MaxServices by evicting the least recently used on-demand
// service, and indexes vip for it. It reports false when it refused.
func (a *Agent) load(svc keyspace.Service, vip netip.Addr, why string) bool {
	now := a.opts.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.services[svc]
	if s != nil {
		s.onDemand = true
		s.lastUsed = now
		if vip.IsValid() {
			a.indexVIPLocked(s, vip)
		}
		if !s.watched {
			// Evicted, its removal not applied yet: keep it instead.
			delete(a.pending, svc)
			s.watched = true
			a.src.Watch(svc)
		}
		return true
	}
	if a.loadedLocked() >= a.opts.MaxServices {
		victim := a.lruLocked()
		if victim == nil {
			a.stats.refused.Add(1)
			a.log.Warn("--max-services reached and no on-demand service to evict: not loading",
				"service", svc, "max_services", a.opts.MaxServices)
			return false
		}
		a.stats.evictedLRU.Add(1)
		a.log.Info("--max-services reached: evicting the least recently used on-demand service",
			"evicted", victim.key, "for", svc, "idle", now.Sub(victim.lastUsed).Round(time.Second))
		a.evictLocked(victim)
	}
	s = &service{key: svc, onDemand: true, watched: true, lastUsed: now}
	a.services[svc] = s
	if vip.IsValid() {
		a.indexVIPLocked(s, vip)
	}
	a.src.Watch(svc)
	a.log.Debug("loading service on demand", "service", svc, "vip", vip, "why", why)
	return true
}

func (a *Agent) indexVIPLocked(s *service, vip netip.Addr) {
	if a.vips[vip] == s.key {
		return
	}
	a.vips[vip] = s.key
	s.vips = append(s.vips, vip)
}

// loadedLocked returns the number of services watched.
func (a *Agent) loadedLocked() int {
	n := 0
	for _, s := range a.services {
		if s.watched {
			n++
		}
	}
	return n
}

// evictable says whether s is loaded only on demand.
func (s *service) evictable() bool { return s.onDemand && !s.declared && !s.namespace && s.watched }

// lruLocked returns the least recently used evictable service, or nil.
func (a *Agent) lruLocked() *service {
	var lru *service
	for _, s := range a.services {
		if s.evictable() && (lru == nil || s.lastUsed.Before(lru.lastUsed)) {
			lru = s
		}
	}
	return lru
}

// evictLocked unwatches s and queues the removal of its entries.
func (a *Agent) evictLocked(s *service) {
	s.watched = false
	a.src.Unwatch(s.key)
	a.indexVIPsLocked(s, nil)
	a.pending[s.key] = item{ev: etcdsource.Event{Service: s.key}, drop: true}
	kick(a.wake)
}

// evictIdle unloads the on-demand services unused for Options.IdleTimeout.
// Usage comes from ReportMiss, ReportUse and the programs' usage map.
func (a *Agent) evictIdle() {
	a.mu.Lock()
	progs := a.programs
	a.mu.Unlock()
	var used map[keyspace.Service]time.Time
	if progs != nil {
		usage, err := progs.Usage()
		if err != nil {
			a.log.Warn("reading the programs' usage", "err", err)
		}
		used = make(map[keyspace.Service]time.Time)
		for id, t := range usage {
			if svc, ok := a.table.OwnerOfID(id); ok && t.After(used[svc]) {
				used[svc] = t
			}
		}
	}
	now := a.opts.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for svc, t := range used {
		if s := a.services[svc]; s != nil && t.After(s.lastUsed) {
			s.lastUsed = t
		}
	}
	for _, s := range a.services {
		if s.evictable() && now.Sub(s.lastUsed) >= a.opts.IdleTimeout {
			a.stats.evictedIdle.Add(1)
			a.log.Debug("unloading idle on-demand service", "service", s.key, "idle", now.Sub(s.lastUsed).Round(time.Second))
			a.evictLocked(s)
		}
	}
}
