package etcdsource

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// vipCache remembers unknown VIPs and the lookups in flight, so that
// concurrent and repeated Resolve calls for one address share one Get.
type vipCache struct {
	mu       sync.Mutex
	unknown  map[netip.Addr]time.Time // VIP -> when the miss expires
	sweepAt  int                      // sweep expired misses when unknown reaches this size
	inflight map[netip.Addr]*lookup
}

// lookup is one Get of vips/<ip> in flight; done is closed when its result is set.
type lookup struct {
	done chan struct{}
	svc  keyspace.Service
	ok   bool
	err  error
}

func newVIPCache() vipCache {
	return vipCache{unknown: map[netip.Addr]time.Time{}, sweepAt: 1024, inflight: map[netip.Addr]*lookup{}}
}

// Resolve returns the service whose VIP is ip, with one Get of vips/<ip>.
// ok is false when no service has that VIP; such misses are remembered for
// Options.NegativeTTL (up to Options.MaxNegative of them), so a scan of
// unknown addresses costs etcd one read per address per TTL. Hits are not
// cached: the caller watches the service. An IPv4-mapped IPv6 address is
// looked up as IPv4.
func (s *Source) Resolve(ctx context.Context, ip netip.Addr) (svc keyspace.Service, ok bool, err error) {
	if !ip.IsValid() {
		return keyspace.Service{}, false, errors.New("resolve: invalid address")
	}
	ip = ip.Unmap()
	c := &s.vips
	for {
		c.mu.Lock()
		if exp, found := c.unknown[ip]; found && s.now().Before(exp) {
			c.mu.Unlock()
			s.stats.negativeHits.Add(1)
			return keyspace.Service{}, false, nil
		}
		if l := c.inflight[ip]; l != nil {
			c.mu.Unlock()
			select {
			case <-l.done:
			case <-ctx.Done():
				return keyspace.Service{}, false, ctx.Err()
			}
			if l.err == nil {
				return l.svc, l.ok, nil
			}
			continue // that caller failed, perhaps on its own context: try ourselves
		}
		l := &lookup{done: make(chan struct{})}
		c.inflight[ip] = l
		c.mu.Unlock()

		l.svc, l.ok, l.err = s.lookupVIP(ctx, ip)

		c.mu.Lock()
		delete(c.inflight, ip)
		switch {
		case l.err != nil:
		case l.ok:
			delete(c.unknown, ip) // an expired miss
		default:
			c.remember(ip, s.now(), s.opts.NegativeTTL, s.opts.MaxNegative)
		}
		c.mu.Unlock()
		close(l.done)
		return l.svc, l.ok, l.err
	}
}

// lookupVIP reads vips/<ip>.
func (s *Source) lookupVIP(ctx context.Context, ip netip.Addr) (keyspace.Service, bool, error) {
	key := s.space.VIP(ip.String())
	resp, err := s.c.Get(ctx, key)
	s.stats.gets.Add(1)
	if err != nil {
		return keyspace.Service{}, false, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return keyspace.Service{}, false, nil
	}
	svc, err := keyspace.ParseService(string(resp.Kvs[0].Value))
	if err != nil {
		return keyspace.Service{}, false, fmt.Errorf("get %s: %w", key, err)
	}
	return svc, true, nil
}

// remember records a miss. When the table has grown to sweepAt it first
// drops expired misses; when it is full it records nothing. Caller holds c.mu.
func (c *vipCache) remember(ip netip.Addr, now time.Time, ttl time.Duration, limit int) {
	if len(c.unknown) >= c.sweepAt {
		for a, exp := range c.unknown {
			if !now.Before(exp) {
				delete(c.unknown, a)
			}
		}
		c.sweepAt = max(2*len(c.unknown), 1024)
	}
	if len(c.unknown) >= limit {
		return
	}
	c.unknown[ip] = now.Add(ttl)
}
