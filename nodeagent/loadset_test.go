package nodeagent

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
)

// fakeClock is a settable clock for loadSet.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func svcKey(name string) keyspace.Service { return keyspace.Service{Namespace: "ns", Name: name} }

func vip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestLoadSetCapEvictsLeastRecentlyUsedOnDemand(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := newLoadSet([]keyspace.Service{svcKey("declared")}, 0, 3, time.Hour, clk.now)
	if got := l.start(); !slices.Equal(got, []keyspace.Service{svcKey("declared")}) {
		t.Fatalf("start = %v, want the declared service", got)
	}
	for i, name := range []string{"a", "b"} {
		clk.advance(time.Second)
		res, eff := l.onDemand(svcKey(name), vip("127.77.0."+string(rune('1'+i))))
		if !res.loaded || !res.added || !slices.Equal(eff.watch, []keyspace.Service{svcKey(name)}) || len(eff.evict) != 0 {
			t.Fatalf("load %s: %+v %+v", name, res, eff)
		}
	}
	// a is used again: b is now the least recently used.
	clk.advance(time.Second)
	if svc, ok := l.known(vip("127.77.0.1")); !ok || svc != svcKey("a") {
		t.Fatalf("known(127.77.0.1) = %v %v, want ns/a", svc, ok)
	}
	clk.advance(time.Second)
	res, eff := l.onDemand(svcKey("c"), netip.Addr{})
	if !res.added || len(eff.evict) != 1 || eff.evict[0].svc != svcKey("b") || eff.evict[0].idle != 2*time.Second {
		t.Fatalf("load c at the cap: %+v %+v, want b evicted after 2 s unused", res, eff)
	}
	if l.watching(svcKey("b")) || !l.watching(svcKey("c")) {
		t.Fatal("b still watched or c not watched")
	}
	if _, ok := l.known(vip("127.77.0.2")); ok {
		t.Fatal("the evicted service's VIP is still indexed")
	}
	// b loaded again before its removal was applied: kept, nothing to
	// drop (its record was still there: the cap is not checked again).
	clk.advance(time.Second)
	res, eff = l.onDemand(svcKey("b"), netip.Addr{})
	if !res.loaded || res.added || !slices.Equal(eff.watch, []keyspace.Service{svcKey("b")}) || len(eff.evict) != 0 {
		t.Fatalf("reload b: %+v %+v, want b watched again", res, eff)
	}
	if l.dropped(svcKey("b")) {
		t.Fatal("dropped reports a removal for a service loaded again")
	}
	if c := l.counts(); c.services != 4 || c.declared != 1 || c.onDemand != 3 {
		t.Fatalf("counts %+v, want 4 services (1 declared, 3 on demand)", c)
	}
	// a (used at +3 s) is now the least recently used of a, c, b.
	clk.advance(time.Second)
	if res, eff = l.onDemand(svcKey("d"), netip.Addr{}); !res.added || len(eff.evict) != 1 || eff.evict[0].svc != svcKey("a") {
		t.Fatalf("load d: %+v %+v, want a evicted", res, eff)
	}
	if !l.dropped(svcKey("a")) || l.dropped(svcKey("a")) {
		t.Fatal("a's removal not reported exactly once")
	}
}

func TestLoadSetRefusesWithoutEvictable(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := newLoadSet([]keyspace.Service{svcKey("d1"), svcKey("d2")}, 0, 2, time.Hour, clk.now)
	l.start()
	if res, eff := l.onDemand(svcKey("x"), netip.Addr{}); !res.refused || res.loaded || len(eff.watch)+len(eff.evict) != 0 {
		t.Fatalf("load over a cap of declared services: %+v %+v, want refused", res, eff)
	}
	// A namespace service is not evictable either.
	if eff := l.namespaced(svcKey("d1"), false); len(eff.watch) != 0 {
		t.Fatalf("namespaced on a watched service asks to watch it again: %+v", eff)
	}
	if res, _ := l.onDemand(svcKey("d1"), netip.Addr{}); !res.loaded || res.added {
		t.Fatalf("on demand of a declared service: %+v, want loaded, not added", res)
	}
	if lru := l.lru(); lru != nil {
		t.Fatalf("lru = %v, want none (declared and namespaced services are not evictable)", lru.key)
	}
}

func TestLoadSetIdleEviction(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := newLoadSet(nil, 0, 10, time.Minute, clk.now)
	l.onDemand(svcKey("a"), vip("127.77.0.1"))
	l.onDemand(svcKey("b"), vip("127.77.0.2"))
	clk.advance(50 * time.Second)
	l.use(vip("127.77.0.1"))
	clk.advance(20 * time.Second)
	// b's programs report a use 30 s ago: not idle yet either.
	if eff := l.idle(map[keyspace.Service]time.Time{svcKey("b"): clk.t.Add(-30 * time.Second)}); len(eff.evict) != 0 {
		t.Fatalf("evicted %+v, want none", eff.evict)
	}
	clk.advance(35 * time.Second)
	eff := l.idle(nil)
	if len(eff.evict) != 1 || eff.evict[0].svc != svcKey("b") || eff.evict[0].idle != 65*time.Second {
		t.Fatalf("evicted %+v, want b after 65 s unused", eff.evict)
	}
	never := newLoadSet(nil, 0, 10, -1, clk.now)
	never.onDemand(svcKey("a"), netip.Addr{})
	clk.advance(24 * time.Hour)
	if eff := never.idle(nil); len(eff.evict) != 0 {
		t.Fatalf("a negative idle timeout evicted %+v", eff.evict)
	}
}

func TestLoadSetReadinessAndRemovals(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := newLoadSet([]keyspace.Service{svcKey("d")}, 1, 10, time.Hour, clk.now)
	l.start()
	if l.initialDone() || l.waitingFor() != "1 of 1 namespaces not listed yet" {
		t.Fatalf("before listing: done %v, waiting for %q", l.initialDone(), l.waitingFor())
	}
	if eff := l.namespaced(svcKey("n"), true); !slices.Equal(eff.watch, []keyspace.Service{svcKey("n")}) {
		t.Fatalf("namespaced: %+v", eff)
	}
	l.listed()
	if got := l.waitingFor(); got != "waiting for services ns/d, ns/n" {
		t.Fatalf("waitingFor = %q", got)
	}
	if !l.markAbsent(svcKey("d")) || l.markAbsent(svcKey("d")) {
		t.Fatal("markAbsent did not report exactly one change")
	}
	st := &model.Service{}
	fes := []nodemodel.Frontend{{Key: datapath.NewFrontendKey(netip.AddrPortFrom(vip("127.77.0.9"), 80), datapath.TCP)}}
	if ok, first := l.change(svcKey("n"), "h1"); !ok || !first {
		t.Fatalf("change of an undelivered service: %v %v", ok, first)
	}
	l.applied(svcKey("n"), "h1", st, fes, false)
	if ok, _ := l.change(svcKey("n"), "h1"); ok {
		t.Fatal("the same hash counts as a change")
	}
	if !l.initialDone() || !l.delivered([]keyspace.Service{svcKey("n"), svcKey("d")}) {
		t.Fatal("not done after every initial service was delivered")
	}
	if svc, ok := l.known(vip("127.77.0.9")); !ok || svc != svcKey("n") {
		t.Fatalf("applied frontends not indexed: %v %v", svc, ok)
	}
	// Gone upstream: the namespace service is unloaded, the declared one stays.
	if ok, unwatch := l.removed(svcKey("n")); !ok || !unwatch || l.watching(svcKey("n")) {
		t.Fatalf("removed(n) = %v %v", ok, unwatch)
	}
	if ok, unwatch := l.removed(svcKey("d")); !ok || unwatch || !l.watching(svcKey("d")) {
		t.Fatalf("removed(d) = %v %v", ok, unwatch)
	}
	if ok, _ := l.removed(svcKey("n")); ok {
		t.Fatal("a service no longer loaded is removed twice")
	}
}
