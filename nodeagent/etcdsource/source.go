package etcdsource

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"

	"github.com/meshrelay/meshrelay/internal/backoff"
	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// Client is the part of an etcd client the Source uses. *clientv3.Client
// satisfies it.
type Client interface {
	clientv3.KV
	clientv3.Watcher
}

// Options configure a Source. The zero value is usable.
type Options struct {
	// Cluster is the keyspace's cluster id. Default keyspace.DefaultCluster.
	Cluster string
	// Shards is the number of relay shards; it must match the relay's
	// --shards. Default keyspace.DefaultShards.
	Shards int
	// NegativeTTL is how long Resolve remembers the VIPs of a range (an
	// IPv4 /24, an IPv6 address) read from etcd, and so that an address
	// of it is unknown. Default 5 s.
	NegativeTTL time.Duration
	// MaxNegative bounds the ranges remembered. When it is reached,
	// further answers are not cached until entries expire (a scan cannot
	// flush the cache). Default 65,536 (an IPv4 /8 of /24s).
	MaxNegative int
	// MaxVIPReads bounds the reads of vips/ in flight. Default 8.
	MaxVIPReads int
	// MaxVIPReadsPerSecond is the global rate limit of reads of vips/
	// (burst: a tenth of it, at least 1). Default 100.
	MaxVIPReadsPerSecond float64
	// ServiceCIDRs, when set, are the ranges every VIP of a spec must be
	// in; a spec with a VIP outside them is invalid.
	ServiceCIDRs []netip.Prefix
	// MaxFrontends bounds a spec's VIPs × ports; a spec with more is
	// invalid. Default DefaultMaxFrontends.
	MaxFrontends int
	// ProbeInterval is how often the generation key is read to detect an
	// etcd that was wiped and rebuilt: its revisions restart, so watches
	// resumed at old revisions go silent instead of failing. A client that
	// tells its connection state (*clientv3.Client) is also probed at once
	// each time its connection comes back (reconnect.go), which is how a
	// wipe is normally found, and so is the Source's watch stream each
	// time it is opened again (stream.go); the ticks, spread over
	// [ProbeInterval/2, ProbeInterval], are a backstop. Default
	// DefaultProbeInterval (5 min); a failed probe is tried again after at
	// most probeRetry.
	ProbeInterval time.Duration
	// Logger receives the Source's messages. Default: discarded.
	Logger *slog.Logger
	// OnResponse, if set, is called for every watch response that brings
	// a service new events, with the newest revision it holds and when
	// it arrived: the watch delivery stage of the propagation lag, for
	// measurements (the scale harness). It must not block.
	OnResponse func(svc keyspace.Service, revision int64, at time.Time)
}

// Source watches the etcd keys of the services its caller asks for and
// queues their complete states. Create it with New, start it with Run.
type Source struct {
	c     Client
	space keyspace.Space
	opts  Options
	log   *slog.Logger
	now   func() time.Time // replaced by tests

	// stream carries the watches when the client has a gRPC connection
	// (stream.go); nil: the client's Watcher does (watchKeys).
	stream *watchStream

	spawn chan struct{} // capacity 1: Watch registered a service for Run to start
	probe chan struct{} // capacity 1: a list saw a generation or revision the control loop does not know

	mu        sync.Mutex
	running   bool
	watches   map[keyspace.Service]*watch
	unstarted []*watch // registered by Watch, goroutine not started yet
	// namespaces: the relist signals of the running RunNamespace calls,
	// kicked when etcd was rebuilt.
	namespaces map[chan struct{}]struct{}
	ctl        control
	queue      queue

	vips     vipCache
	vipReads *rate.Limiter // reads of vips/ per second
	stats    counters
	// mismatch: why the relays' configuration disagrees (Mismatch); guarded by mu.
	mismatch string
}

// New returns a Source reading through c. It does nothing until Run.
func New(c Client, opts Options) *Source {
	if opts.Shards <= 0 {
		opts.Shards = keyspace.DefaultShards
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = 5 * time.Second
	}
	if opts.MaxNegative <= 0 {
		opts.MaxNegative = 1 << 16
	}
	if opts.MaxVIPReads <= 0 {
		opts.MaxVIPReads = 8
	}
	if opts.MaxVIPReadsPerSecond <= 0 {
		opts.MaxVIPReadsPerSecond = 100
	}
	if opts.MaxFrontends <= 0 {
		opts.MaxFrontends = DefaultMaxFrontends
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		c:          c,
		space:      keyspace.New(opts.Cluster),
		opts:       opts,
		log:        log,
		now:        time.Now,
		spawn:      make(chan struct{}, 1),
		probe:      make(chan struct{}, 1),
		watches:    map[keyspace.Service]*watch{},
		namespaces: map[chan struct{}]struct{}{},
		ctl:        control{markers: map[int]marker{}, seen: map[string]bool{}},
		queue:      newQueue(),
		vips:       newVIPCache(opts.MaxVIPReads),
		vipReads:   rate.NewLimiter(rate.Limit(opts.MaxVIPReadsPerSecond), max(1, int(opts.MaxVIPReadsPerSecond/10))),
		stats:      newCounters(),
	}
	if cc, ok := c.(connClient); ok {
		if conn := cc.ActiveConnection(); conn != nil {
			s.stream = newWatchStream(conn, log)
			// A stream broken and opened again may reach another etcd
			// (behind a gRPC proxy that kept the connection).
			s.stream.reopened = func() { kick(s.probe) }
		}
	}
	return s
}

// watchKeys watches the keys in [key, end) (key alone when end is empty)
// from rev, without deletions when noDelete: on the Source's own stream
// when it has one (Run opens it), else through the client's Watcher.
func (s *Source) watchKeys(ctx context.Context, key, end string, rev int64, noDelete bool) clientv3.WatchChan {
	if s.stream != nil {
		return s.stream.Watch(ctx, key, end, rev, noDelete)
	}
	opts := []clientv3.OpOption{clientv3.WithRev(rev), clientv3.WithFragment()}
	if end != "" {
		opts = append(opts, clientv3.WithRange(end))
	}
	if noDelete {
		opts = append(opts, clientv3.WithFilterDelete())
	}
	return s.c.Watch(ctx, key, opts...)
}

// Run watches generation and the synced/ markers, and every service asked
// for with Watch, until ctx is done; it then returns ctx.Err(). etcd errors
// are logged and retried with backoff. Run may be called once.
func (s *Source) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("etcdsource: Run called twice")
	}
	s.running = true
	s.mu.Unlock()

	// Every watch is opened under this context (or one derived from it
	// without new metadata), so clientv3 puts them all on one gRPC stream.
	ctx = clientv3.WithRequireLeader(ctx)
	var wg sync.WaitGroup
	if s.stream != nil {
		wg.Go(func() { s.stream.run(ctx) })
	}
	wg.Go(func() { s.runControl(ctx) })
	wg.Go(func() { s.followConnection(ctx) })
	for {
		s.startWatches(ctx, &wg)
		select {
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		case <-s.spawn:
		}
	}
}

// startWatches starts the goroutines of the services registered since the
// last call. Their first lists are read together (firstList), in
// goroutines of their own: nothing here waits for etcd.
func (s *Source) startWatches(ctx context.Context, wg *sync.WaitGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ws []*watch
	for _, w := range s.unstarted {
		if s.watches[w.svc] == w { // else unwatched meanwhile
			ws = append(ws, w)
		}
	}
	s.unstarted = nil
	for lo := 0; lo < len(ws); lo += firstListBatch {
		batch := ws[lo:min(lo+firstListBatch, len(ws))]
		fl := newFirstList(len(batch))
		wg.Go(func() { s.readFirst(ctx, batch, fl) })
		for i, w := range batch {
			wctx, cancel := context.WithCancel(ctx)
			w.cancel = cancel
			wg.Go(func() { s.runWatch(wctx, w, fl, i) })
		}
	}
}

// Watch starts watching svc: its current state, once complete, is queued,
// then every change. Calling it for a watched service does nothing. It may
// be called before Run.
func (s *Source) Watch(svc keyspace.Service) {
	s.mu.Lock()
	if _, ok := s.watches[svc]; ok {
		s.mu.Unlock()
		return
	}
	w := newWatch(svc, keyspace.Shard(svc, s.opts.Shards), limits{cidrs: s.opts.ServiceCIDRs, maxFrontends: s.opts.MaxFrontends})
	s.watches[svc] = w
	s.unstarted = append(s.unstarted, w)
	s.mu.Unlock()
	kick(s.spawn)
}

// Unwatch stops watching svc and forgets its pending event; it queues
// nothing. The caller owns what it already installed for svc.
func (s *Source) Unwatch(svc keyspace.Service) {
	s.mu.Lock()
	w, ok := s.watches[svc]
	if !ok {
		s.mu.Unlock()
		return
	}
	delete(s.watches, svc)
	s.queue.drop(svc)
	cancel := w.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// emit queues ev if w is still the watch registered for its service.
func (s *Source) emit(w *watch, ev Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watches[w.svc] != w {
		return false
	}
	if s.queue.put(ev) {
		s.stats.coalesced.Add(1)
	}
	s.stats.events.Add(1)
	return true
}

// kick does a non-blocking send on a capacity-1 signal channel.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// drain empties a capacity-1 signal channel.
func drain(c chan struct{}) {
	select {
	case <-c:
	default:
	}
}

// retryResetAfter: a watch that ran this long before failing retries from
// the shortest delay again.
const retryResetAfter = time.Minute

// newRetry paces re-lists after etcd errors: 100 ms doubling to 5 s, jittered.
func newRetry() *backoff.Backoff {
	return backoff.New(backoff.Options{Initial: 100 * time.Millisecond, Max: 5 * time.Second})
}
