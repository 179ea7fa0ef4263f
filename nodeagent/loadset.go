package nodeagent

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
)

// loadSet decides which services the agent loads and why: declared
// (Options.Services), of a loaded namespace, or on demand, under the cap
// Options.MaxServices (least recently used on-demand service first out)
// and the idle timeout. It also records what was delivered of each, for
// readiness. It is pure: no goroutines, no etcd, no locks (the Agent
// guards it with its mutex), and its clock is injected. What the agent
// must do about a decision (watch, evict) is returned as effects.
type loadSet struct {
	now         func() time.Time
	maxServices int
	idleTimeout time.Duration // <= 0: never
	namespaces  int           // namespaces to list before readiness
	nsListed    int           // namespaces whose initial listing is done

	services   map[keyspace.Service]*service
	vips       map[netip.Addr]keyspace.Service
	conflicted map[*service]struct{} // services with frontends owned by another
}

// service is what the agent knows of one service it loads.
type service struct {
	key keyspace.Service
	// Why it is loaded; a service can have several reasons.
	declared  bool // Options.Services
	namespace bool // in one of Options.Namespaces
	onDemand  bool // loaded by a miss, or adopted from the dump
	// initial: the first complete reconcile waits for its delivery.
	initial bool
	// watched: the source watches it. An evicted service is no longer
	// watched and is forgotten once its removal has been applied.
	watched bool
	// delivered: a state or a removal of it has been applied (or etcd,
	// completely synced, showed it absent).
	delivered bool
	hash      string       // content hash of the state applied; "" for none
	vips      []netip.Addr // VIPs indexed in loadSet.vips for it
	lastUsed  time.Time
	state     *model.Service // the state applied (shared with the source, read-only)
}

// evictable says whether s is loaded only on demand.
func (s *service) evictable() bool { return s.onDemand && !s.declared && !s.namespace && s.watched }

// effects are what a loadSet decision asks of the agent.
type effects struct {
	// watch: have the source watch these (and forget a queued removal of
	// their entries: they are loaded again).
	watch []keyspace.Service
	// evict: have the source stop watching these and queue the removal of
	// their entries.
	evict []eviction
}

// eviction is a service unloaded, and how long it had been unused.
type eviction struct {
	svc  keyspace.Service
	idle time.Duration
}

func (e *effects) add(o effects) {
	e.watch = append(e.watch, o.watch...)
	e.evict = append(e.evict, o.evict...)
}

// newLoadSet returns the load set of the declared services, none watched
// yet (see start).
func newLoadSet(declared []keyspace.Service, namespaces, maxServices int, idle time.Duration, now func() time.Time) *loadSet {
	l := &loadSet{
		now: now, maxServices: maxServices, idleTimeout: idle, namespaces: namespaces,
		services:   map[keyspace.Service]*service{},
		vips:       map[netip.Addr]keyspace.Service{},
		conflicted: map[*service]struct{}{},
	}
	t := now()
	for _, svc := range declared {
		l.services[svc] = &service{key: svc, declared: true, initial: true, lastUsed: t}
	}
	return l
}

// start marks every service known so far watched and returns them.
func (l *loadSet) start() []keyspace.Service {
	out := make([]keyspace.Service, 0, len(l.services))
	for svc, s := range l.services {
		s.watched = true
		out = append(out, svc)
	}
	return out
}

// watching says whether svc is loaded (its events are wanted).
func (l *loadSet) watching(svc keyspace.Service) bool {
	s := l.services[svc]
	return s != nil && s.watched
}

// loadResult says what onDemand did.
type loadResult struct {
	loaded bool // loaded, or already loaded
	added  bool // newly loaded
	// refused: not loaded, for lack of an evictable service at the cap.
	refused bool
}

// onDemand loads svc on demand, making room under maxServices by evicting
// the least recently used on-demand service, and indexes vip (if valid)
// for it.
func (l *loadSet) onDemand(svc keyspace.Service, vip netip.Addr) (loadResult, effects) {
	now := l.now()
	var eff effects
	if s := l.services[svc]; s != nil {
		s.onDemand = true
		s.lastUsed = now
		if vip.IsValid() {
			l.indexVIP(s, vip)
		}
		if !s.watched {
			// Evicted, its removal not applied yet: keep it instead.
			s.watched = true
			eff.watch = append(eff.watch, svc)
		}
		return loadResult{loaded: true}, eff
	}
	if l.loaded() >= l.maxServices {
		victim := l.lru()
		if victim == nil {
			return loadResult{refused: true}, eff
		}
		eff.evict = append(eff.evict, l.evict(victim, now))
	}
	s := &service{key: svc, onDemand: true, watched: true, lastUsed: now}
	l.services[svc] = s
	if vip.IsValid() {
		l.indexVIP(s, vip)
	}
	eff.watch = append(eff.watch, svc)
	return loadResult{loaded: true, added: true}, eff
}

// namespaced loads svc as a service of a loaded namespace. initial
// services (listed at start) count for the first complete reconcile.
func (l *loadSet) namespaced(svc keyspace.Service, initial bool) effects {
	var eff effects
	s := l.services[svc]
	if s == nil {
		s = &service{key: svc, lastUsed: l.now()}
		l.services[svc] = s
	}
	s.namespace = true
	s.initial = s.initial || initial
	if !s.watched {
		s.watched = true
		eff.watch = append(eff.watch, svc)
	}
	return eff
}

// listed records that one namespace's initial listing is done.
func (l *loadSet) listed() { l.nsListed++ }

// known returns the loaded service of VIP ip, and marks it used now.
func (l *loadSet) known(ip netip.Addr) (keyspace.Service, bool) {
	svc, ok := l.vips[ip]
	if !ok {
		return keyspace.Service{}, false
	}
	s := l.services[svc]
	if s == nil || !s.watched {
		return keyspace.Service{}, false
	}
	s.lastUsed = l.now()
	return svc, true
}

// use marks the service of VIP ip used now.
func (l *loadSet) use(ip netip.Addr) {
	if svc, ok := l.vips[ip]; ok {
		if s := l.services[svc]; s != nil {
			s.lastUsed = l.now()
		}
	}
}

// idle takes the services' latest uses in used (from the programs' usage
// map) and evicts the on-demand services unused for idleTimeout.
func (l *loadSet) idle(used map[keyspace.Service]time.Time) effects {
	var eff effects
	if l.idleTimeout <= 0 {
		return eff
	}
	now := l.now()
	for svc, t := range used {
		if s := l.services[svc]; s != nil && t.After(s.lastUsed) {
			s.lastUsed = t
		}
	}
	for _, s := range l.services {
		if s.evictable() && now.Sub(s.lastUsed) >= l.idleTimeout {
			eff.evict = append(eff.evict, l.evict(s, now))
		}
	}
	return eff
}

// loaded returns the number of services watched.
func (l *loadSet) loaded() int {
	n := 0
	for _, s := range l.services {
		if s.watched {
			n++
		}
	}
	return n
}

// lru returns the least recently used evictable service, or nil.
func (l *loadSet) lru() *service {
	var lru *service
	for _, s := range l.services {
		if s.evictable() && (lru == nil || s.lastUsed.Before(lru.lastUsed)) {
			lru = s
		}
	}
	return lru
}

// evict unwatches s; its record stays until its removal is applied (dropped).
func (l *loadSet) evict(s *service, now time.Time) eviction {
	s.watched = false
	l.indexVIPs(s, nil)
	return eviction{svc: s.key, idle: now.Sub(s.lastUsed)}
}

// dropped is called when the removal of an evicted service's entries is
// about to be applied. It reports false (nothing to remove) when the
// service is unknown or was loaded again meanwhile.
func (l *loadSet) dropped(svc keyspace.Service) bool {
	s := l.services[svc]
	if s == nil || s.watched {
		return false
	}
	l.forget(s)
	return true
}

// removed records that svc is gone upstream. An on-demand or namespace
// service is unloaded (unwatch: the source should stop watching it; the
// namespace watch loads it again should it return); a declared one stays
// watched. It reports false when svc is not loaded (nothing to do).
func (l *loadSet) removed(svc keyspace.Service) (ok, unwatch bool) {
	s := l.services[svc]
	if s == nil || !s.watched {
		return false, false
	}
	s.delivered, s.hash, s.state = true, "", nil
	l.setConflicts(s, false)
	l.indexVIPs(s, nil)
	if s.declared {
		return true, false
	}
	s.watched = false
	l.forget(s)
	return true, true
}

// change says whether a state of content hash would change svc: ok is
// false when svc is not loaded or its applied state has that hash; first
// is true when no state of it was applied yet.
func (l *loadSet) change(svc keyspace.Service, hash string) (ok, first bool) {
	s := l.services[svc]
	if s == nil || !s.watched || (s.delivered && s.hash == hash) {
		return false, false
	}
	return true, s.state == nil
}

// applied records the state of svc just set in the table, with its
// frontends and whether some are owned by another service.
func (l *loadSet) applied(svc keyspace.Service, hash string, state *model.Service, fes []nodemodel.Frontend, conflict bool) {
	s := l.services[svc]
	if s == nil {
		return
	}
	s.delivered, s.hash, s.state = true, hash, state
	l.setConflicts(s, conflict)
	l.indexVIPs(s, fes)
}

// conflicts returns the loaded services with frontends owned by another
// service, with their states, to be set again.
func (l *loadSet) conflicts() []*service {
	var out []*service
	for s := range l.conflicted {
		if s.watched && s.state != nil {
			out = append(out, s)
		}
	}
	return out
}

// setConflicts records whether some of s's frontends are owned by another
// service.
func (l *loadSet) setConflicts(s *service, c bool) {
	if c {
		l.conflicted[s] = struct{}{}
	} else {
		delete(l.conflicted, s)
	}
}

// indexVIPs makes the VIPs of fes point at s in l.vips.
func (l *loadSet) indexVIPs(s *service, fes []nodemodel.Frontend) {
	for _, ip := range s.vips {
		if l.vips[ip] == s.key {
			delete(l.vips, ip)
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
		l.vips[ip] = s.key
	}
}

func (l *loadSet) indexVIP(s *service, vip netip.Addr) {
	if l.vips[vip] == s.key {
		return
	}
	l.vips[vip] = s.key
	s.vips = append(s.vips, vip)
}

// forget drops the record of an unwatched service.
func (l *loadSet) forget(s *service) {
	l.indexVIPs(s, nil)
	delete(l.conflicted, s)
	if l.services[s.key] == s {
		delete(l.services, s.key)
	}
}

// initialDone says whether every namespace was listed and every initial
// service delivered: the first complete reconcile.
func (l *loadSet) initialDone() bool {
	if l.nsListed < l.namespaces {
		return false
	}
	for _, s := range l.services {
		if s.initial && !s.delivered {
			return false
		}
	}
	return true
}

// waitingFor says what the first complete reconcile waits for.
func (l *loadSet) waitingFor() string {
	if l.nsListed < l.namespaces {
		return fmt.Sprintf("%d of %d namespaces not listed yet", l.namespaces-l.nsListed, l.namespaces)
	}
	var waiting []string
	for _, s := range l.services {
		if s.initial && !s.delivered {
			waiting = append(waiting, s.key.String())
		}
	}
	slices.Sort(waiting)
	if len(waiting) > 3 {
		waiting = append(waiting[:3], fmt.Sprintf("and %d more", len(waiting)-3))
	}
	return "waiting for services " + strings.Join(waiting, ", ")
}

// undeliveredInitial returns the watched initial services not delivered yet.
func (l *loadSet) undeliveredInitial() []keyspace.Service {
	var out []keyspace.Service
	for _, s := range l.services {
		if s.initial && !s.delivered && s.watched {
			out = append(out, s.key)
		}
	}
	return out
}

// markAbsent records that svc is absent from a completely synced etcd: it
// counts as delivered. It reports whether that changed anything.
func (l *loadSet) markAbsent(svc keyspace.Service) bool {
	s := l.services[svc]
	if s == nil || s.delivered {
		return false
	}
	s.delivered = true
	return true
}

// delivered says whether every service of svcs has been delivered, or is
// no longer loaded.
func (l *loadSet) delivered(svcs []keyspace.Service) bool {
	for _, svc := range svcs {
		if s := l.services[svc]; s != nil && s.watched && !s.delivered {
			return false
		}
	}
	return true
}

// loadCounts are the services loaded, by reason.
type loadCounts struct {
	services, declared, namespaced, onDemand int
}

func (l *loadSet) counts() loadCounts {
	var c loadCounts
	for _, s := range l.services {
		if !s.watched {
			continue
		}
		c.services++
		if s.declared {
			c.declared++
		}
		if s.namespace {
			c.namespaced++
		}
		if s.onDemand {
			c.onDemand++
		}
	}
	return c
}
