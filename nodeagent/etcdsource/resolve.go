package etcdsource

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// ErrBusy is returned by Resolve when the etcd read it needs cannot start
// before ctx's deadline: the in-flight bound or the read rate limit
// (Options.MaxVIPReads, Options.MaxVIPReadsPerSecond) holds it back. The
// caller drops the miss; the next connect reports it again.
var ErrBusy = errors.New("resolve: etcd read budget exhausted")

// maxRangeVIPs bounds the keys one range read of a /24 returns: 256
// addresses, with room for keys that are not meshrelay's.
const maxRangeVIPs = 512

// vipCache answers Resolve from memory. It caches whole ranges: an IPv4
// address is looked up with one range read of the vips/ keys of its /24,
// and the answer (the VIPs found, every other address unknown) serves
// every address of the /24 for Options.NegativeTTL; an IPv6 address is its
// own range. A scan therefore costs one read per /24 per TTL, and it cannot
// flush the cache: entries expire, they are never evicted for new ones
// (when Options.MaxNegative ranges are cached, further answers are not
// cached). Lookups of one range in flight are shared.
type vipCache struct {
	mu       sync.Mutex
	ranges   map[netip.Prefix]*vipRange
	sweepAt  int // sweep expired ranges when ranges reaches this size
	inflight map[netip.Prefix]*lookup
	slots    chan struct{} // in-flight reads
}

// vipRange is the cached answer for one range of addresses.
type vipRange struct {
	expires time.Time
	known   map[netip.Addr]keyspace.Service // VIPs of the range in etcd; bounded by maxRangeVIPs
}

// lookup is one read of a range in flight; done is closed when its result is set.
type lookup struct {
	done chan struct{}
	r    *vipRange
	err  error
}

func newVIPCache(inflight int) vipCache {
	return vipCache{
		ranges: map[netip.Prefix]*vipRange{}, sweepAt: 1024,
		inflight: map[netip.Prefix]*lookup{}, slots: make(chan struct{}, inflight),
	}
}

// rangeOf returns the cached range an address belongs to.
func rangeOf(ip netip.Addr) netip.Prefix {
	if ip.Is4() {
		p, _ := ip.Prefix(24)
		return p
	}
	return netip.PrefixFrom(ip, 128)
}

// Resolve returns the service whose VIP is ip. ok is false when no service
// has that VIP. Answers come from the range cache (see vipCache) or from
// one read of the address's range, made under the in-flight bound and the
// global read rate limit; when that read cannot start before ctx's
// deadline Resolve returns ErrBusy. An IPv4-mapped IPv6 address is looked
// up as IPv4.
func (s *Source) Resolve(ctx context.Context, ip netip.Addr) (svc keyspace.Service, ok bool, err error) {
	if !ip.IsValid() {
		return keyspace.Service{}, false, errors.New("resolve: invalid address")
	}
	ip = ip.Unmap()
	p := rangeOf(ip)
	c := &s.vips
	for {
		c.mu.Lock()
		if r := c.ranges[p]; r != nil && s.now().Before(r.expires) {
			c.mu.Unlock()
			svc, ok := r.known[ip]
			if !ok {
				s.stats.negativeHits.Add(1)
			}
			return svc, ok, nil
		}
		if l := c.inflight[p]; l != nil {
			c.mu.Unlock()
			select {
			case <-l.done:
			case <-ctx.Done():
				return keyspace.Service{}, false, ctx.Err()
			}
			if l.err == nil {
				svc, ok := l.r.known[ip]
				return svc, ok, nil
			}
			continue // that caller failed, perhaps on its own context: try ourselves
		}
		l := &lookup{done: make(chan struct{})}
		c.inflight[p] = l
		c.mu.Unlock()

		l.r, l.err = s.readRange(ctx, p, ip)

		c.mu.Lock()
		delete(c.inflight, p)
		if l.err == nil {
			c.remember(p, l.r, s.now(), s.opts.MaxNegative)
		}
		c.mu.Unlock()
		close(l.done)
		if l.err != nil {
			return keyspace.Service{}, false, l.err
		}
		svc, ok := l.r.known[ip]
		return svc, ok, nil
	}
}

// readRange reads the vips/ keys of range p (ip's) under the in-flight
// bound and the rate limit.
func (s *Source) readRange(ctx context.Context, p netip.Prefix, ip netip.Addr) (*vipRange, error) {
	select {
	case s.vips.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.vips.slots }()
	if err := s.vipReads.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, ErrBusy // the wait would pass ctx's deadline
	}
	r := &vipRange{expires: s.now().Add(s.opts.NegativeTTL), known: map[netip.Addr]keyspace.Service{}}
	if p.Bits() == 128 || !ip.Is4() {
		key := s.space.VIP(ip.String())
		resp, err := s.c.Get(ctx, key)
		s.stats.gets.Add(1)
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", key, err)
		}
		if len(resp.Kvs) > 0 {
			svc, err := keyspace.ParseService(string(resp.Kvs[0].Value))
			if err != nil {
				return nil, fmt.Errorf("get %s: %w", key, err)
			}
			r.known[ip] = svc
		}
		return r, nil
	}
	// The dotted-decimal keys of a /24 share the prefix "a.b.c.".
	a := p.Addr().As4()
	prefix := s.space.VIP(fmt.Sprintf("%d.%d.%d.", a[0], a[1], a[2]))
	resp, err := s.c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(maxRangeVIPs))
	s.stats.gets.Add(1)
	if err != nil {
		return nil, fmt.Errorf("get %s*: %w", prefix, err)
	}
	for _, kv := range resp.Kvs {
		vip, err := netip.ParseAddr(strings.TrimPrefix(string(kv.Key), s.space.VIPsPrefix()))
		if err != nil || !p.Contains(vip) {
			continue // not meshrelay's
		}
		if svc, err := keyspace.ParseService(string(kv.Value)); err == nil {
			r.known[vip] = svc
		}
	}
	if resp.More {
		s.log.Warn("more keys under a VIP range than addresses in it; some are not meshrelay's", "prefix", prefix)
	}
	return r, nil
}

// remember caches range p. When the cache has grown to sweepAt it first
// drops expired ranges; when it is full it caches nothing. Caller holds c.mu.
func (c *vipCache) remember(p netip.Prefix, r *vipRange, now time.Time, limit int) {
	if len(c.ranges) >= c.sweepAt {
		for q, old := range c.ranges {
			if !now.Before(old.expires) {
				delete(c.ranges, q)
			}
		}
		c.sweepAt = max(2*len(c.ranges), 1024)
	}
	if len(c.ranges) >= limit && c.ranges[p] == nil {
		return
	}
	c.ranges[p] = r
}
