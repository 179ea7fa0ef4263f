package etcdsource

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// watch is one watched service: a goroutine that lists the service's prefix
// at a revision and then watches it from the next one.
type watch struct {
	svc    keyspace.Service
	shard  int
	relist chan struct{} // capacity 1: list again now

	// Guarded by Source.mu.
	cancel   context.CancelFunc // nil until Run starts the goroutine
	deferred bool               // a removal waits for a synced marker
	// lastList is what the latest list found, updated by watch events
	// that write or delete the spec (Source.Listed, Source.Present).
	// Written only by the goroutine, which may read it without mu.
	lastList listResult

	// Guarded by Source.mu: the control epoch of w's latest list, and
	// whether that list was current (not stale); see Source.followed.
	epoch   uint64
	current bool

	// Owned by the goroutine.
	held    held
	emitted string // hash of the last queued state; "" when nothing, or a removal, was queued
	// invalidSent: an Invalid event was queued since the last state or removal.
	invalidSent bool
	listed      bool
}

func newWatch(svc keyspace.Service, shard int, lim limits) *watch {
	return &watch{svc: svc, shard: shard, relist: make(chan struct{}, 1), held: held{lim: lim}}
}

// listResult is what the latest list of a service found.
type listResult int

const (
	notListed             listResult = iota
	listedPresent                    // a spec (valid or not)
	listedAbsent                     // no spec, its shard not known synced in the current generation
	listedAbsentConfirmed            // no spec, and its shard synced in the current generation
)

// Listed reports whether svc's watch has read svc from etcd at least once
// (listed), and whether the latest read found no spec key while svc's
// shard had a synced marker of the current generation in the same read
// (absent: etcd is known not to hold svc, docs/contract.md). A service
// listed without a spec whose shard was not synced is neither: only a
// read against a completely synced etcd can tell (Complete, HasSpec).
// Unwatched services are not listed.
func (s *Source) Listed(svc keyspace.Service) (listed, absent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.watches[svc]
	if !ok {
		return false, false
	}
	return w.lastList != notListed, w.lastList == listedAbsentConfirmed
}

// Present reports whether svc's watch holds svc's spec key now: its
// latest list found it, or a watch event wrote it since. The source
// delivers such a service itself (its state once complete, or Invalid),
// so a caller waiting for it needs no read of its own (nodeagent's
// startup reads etcd only for services its watch holds no spec of).
// A spec deleted after the list makes the service not present again.
func (s *Source) Present(svc keyspace.Service) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.watches[svc]
	return ok && w.lastList == listedPresent
}

// listing is what a list read besides the service's own keys.
type listing struct {
	rev        int64
	generation string // "" when etcd has no generation yet
	marker     marker // the service's synced/<shard>; zero when absent
	// suspect: the marker cannot confirm a removal (noticeListing).
	suspect bool
}

// confirmed says whether the shard was completely synced in the current
// generation, which is what makes a missing spec a real removal.
func (l listing) confirmed() bool {
	return !l.suspect && l.generation != "" && l.marker.generation == l.generation
}

// runWatch lists and watches w until ctx is done (Unwatch or Run's end).
// Its first list is entry i of fl, read for several watches at once
// (firstlist.go); when that read failed, w lists on its own.
func (s *Source) runWatch(ctx context.Context, w *watch, fl *firstList, i int) {
	first, ok := fl.wait(ctx, i)
	if !ok {
		return // ctx done
	}
	b := newRetry()
	for {
		start := time.Now()
		var l listing
		var err error
		if first != nil {
			// No drain of w.relist: a request made after the batch was
			// read is answered by a list of its own.
			l, first = s.applyList(w, *first), nil
		} else {
			l, err = s.list(ctx, w)
		}
		if err == nil {
			err = s.follow(ctx, w, l.rev)
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errWatchClosed) {
			// Only the Source's end closes a watch without a last
			// response (or a closed client, which no retry mends): the
			// Source's context is done, and w's follows it in a moment.
			<-ctx.Done()
			return
		}
		if err == nil {
			continue // a re-list was asked for
		}
		s.log.Warn("service watch failed, re-listing", "service", w.svc, "err", err)
		if time.Since(start) > retryResetAfter {
			b.Reset() // it worked for a while: start the delays over
		}
		if !b.Wait(ctx) {
			return
		}
	}
}

// listRead is what one read returned for one service: the generation key,
// its shard's synced marker and its own keys, at one revision.
type listRead struct {
	rev        int64
	generation *mvccpb.KeyValue // nil when absent
	marker     *mvccpb.KeyValue // nil when absent
	// parsed is marker parsed, when the read that returned it for
	// several services parsed it once for all (firstlist.go); nil: parse.
	parsed *parsedMarker
	kvs    []*mvccpb.KeyValue
}

// parsedMarker is a synced marker parsed, or why it did not parse.
type parsedMarker struct {
	m   marker
	err error
}

// list reads the service's keys, the generation and the service's synced
// marker in one read-only transaction (one revision), replaces what w held
// (keys that vanished are swept) and queues what changed.
func (s *Source) list(ctx context.Context, w *watch) (listing, error) {
	drain(w.relist) // this list answers every request made so far
	prefix := s.space.ServicePrefix(w.svc)
	resp, err := s.c.Txn(ctx).Then(
		clientv3.OpGet(s.space.Generation()),
		clientv3.OpGet(s.space.Synced(w.shard)),
		clientv3.OpGet(prefix, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return listing{}, fmt.Errorf("list %s: %w", prefix, err)
	}
	r := listRead{rev: resp.Header.Revision, kvs: resp.Responses[2].GetResponseRange().GetKvs()}
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		r.generation = kvs[0]
	}
	if kvs := resp.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 {
		r.marker = kvs[0]
	}
	return s.applyList(w, r), nil
}

// applyList replaces what w held by a list read and queues what changed.
func (s *Source) applyList(w *watch, r listRead) listing {
	s.stats.lists.Add(1)
	if w.listed {
		s.stats.relists.Add(1)
	}
	w.listed = true

	l := listing{rev: r.rev}
	if r.generation != nil {
		l.generation = string(r.generation.Value)
	}
	if r.marker != nil {
		pm := r.parsed
		if pm == nil {
			pm = new(parsedMarker)
			pm.m, pm.err = parseMarker(r.marker)
		}
		if l.marker = pm.m; pm.err != nil {
			s.log.Warn("ignoring bad synced marker", "err", pm.err)
		}
	}
	l.suspect = s.noticeListing(w, l)
	s.reportInvalid(w, w.held.reset(s.space, r.kvs, l.rev))
	res := listedPresent
	if w.held.absent() {
		res = listedAbsent
		if l.confirmed() {
			res = listedAbsentConfirmed
		}
	}
	s.mu.Lock()
	w.lastList = res
	s.mu.Unlock()
	s.reconcile(w, &l)
	return l
}

// follow watches the service from rev+1 and applies its events. It returns
// nil when the service must be listed again (compaction, a request on
// w.relist, a removal to confirm) and an error when the watch failed.
//
// On the Source's own stream the responses are applied by the stream's
// receiving goroutine (WatchFunc) while this one waits; a follower makes
// sure none is applied once follow returns, so that w stays the
// goroutine's own again.
func (s *Source) follow(ctx context.Context, w *watch, rev int64) error {
	prefix := s.space.ServicePrefix(w.svc)
	wctx, cancel := context.WithCancel(ctx) // same metadata: same gRPC stream
	defer cancel()
	s.stats.watchesOpen.Add(1)
	defer s.stats.watchesOpen.Add(-1)
	end := clientv3.GetPrefixRangeEnd(prefix)
	f := &follower{ended: make(chan error, 1)}
	defer f.stop()
	respond := func(resp clientv3.WatchResponse, ok bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.stopped {
			if end, err := s.followResponse(w, prefix, resp, ok); end {
				f.end(err)
			}
		}
	}
	// On the stream, wch stays nil (never ready); with the client's
	// Watcher, this goroutine reads its channel.
	var wch clientv3.WatchChan
	if s.stream != nil {
		s.stream.WatchFunc(wctx, prefix, end, rev+1, false, respond)
	} else {
		wch = s.watchKeys(wctx, prefix, end, rev+1, false)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.relist:
			return nil
		case err := <-f.ended:
			return err
		case resp, ok := <-wch:
			respond(resp, ok)
		}
	}
}

// errWatchClosed is follow's error when its watch ended without a last
// response: the watch stream's run (or the client's Watcher) ended, which
// happens when the Source's context is done. That context's Done closes
// before the contexts derived from it are cancelled, so a watch can see
// its stream end while its own context still looks alive.
var errWatchClosed = errors.New("watch closed without a last response")

// follower is the state of one follow shared with the goroutine that
// applies its responses.
type follower struct {
	mu      sync.Mutex // held while a response is applied
	stopped bool       // no response is applied any more
	ended   chan error // capacity 1: the watch ended, with why
}

// end stops f from within a response, and tells follow why (nil: list
// again). Called with mu held.
func (f *follower) end(err error) {
	f.stopped = true
	f.ended <- err
}

// stop waits for a response being applied, and makes sure no other is.
func (f *follower) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
}

// followResponse applies one response of w's watch (ok false: the watch
// ended without one). It reports whether the watch ends, with an error
// when it failed (nil: list again).
func (s *Source) followResponse(w *watch, prefix string, resp clientv3.WatchResponse, ok bool) (end bool, err error) {
	switch {
	case !ok:
		return true, fmt.Errorf("watch %s: %w", prefix, errWatchClosed)
	case resp.CompactRevision != 0:
		s.stats.compactions.Add(1)
		s.log.Info("watch compacted, re-listing", "service", w.svc, "from", w.held.rev+1, "compacted", resp.CompactRevision)
		return true, nil
	case resp.Err() != nil:
		return true, fmt.Errorf("watch %s: %w", prefix, resp.Err())
	}
	return s.applyResponse(w, resp), nil
}

// applyResponse applies one watch response and queues what changed. It
// reports whether a list must confirm a removal.
func (s *Source) applyResponse(w *watch, resp clientv3.WatchResponse) (confirm bool) {
	at := time.Now()
	from := w.held.rev
	last := from
	for _, ev := range resp.Events {
		// All keys of a service change in one transaction, so a response
		// never leaves the service half-written. Events at or below what
		// is held were already listed or applied (a resumed watch).
		if ev.Kv.ModRevision <= from {
			continue
		}
		s.stats.watchEvents.Add(1)
		s.reportInvalid(w, w.held.apply(s.space, ev))
		last = max(last, ev.Kv.ModRevision)
	}
	s.followed(w, resp.Header.Revision)
	if last == from {
		return false
	}
	w.held.rev = last
	s.noteHeld(w)
	if s.opts.OnResponse != nil {
		s.opts.OnResponse(w.svc, last, at)
	}
	return s.reconcile(w, nil)
}

// noteHeld records, after watch events, whether w holds a spec key
// (Present). A spec deleted by an event makes the service listed absent
// without a marker read: only a list or a completely synced etcd can
// confirm it is gone. w.lastList is only written by w's goroutine, so it
// is read here without the lock.
func (s *Source) noteHeld(w *watch) {
	res := listedPresent
	if w.held.absent() {
		res = listedAbsent
	}
	if w.lastList == res || (res == listedAbsent && w.lastList == listedAbsentConfirmed) {
		return
	}
	s.mu.Lock()
	w.lastList = res
	s.mu.Unlock()
}

// reconcile queues the held state if it is complete and differs from what
// was queued last. A missing spec is a removal only when l, a list, shows
// the shard synced in the current generation; reconcile called after a
// watch response (l == nil) asks for such a list instead.
func (s *Source) reconcile(w *watch, l *listing) (confirm bool) {
	state, c, missing := w.held.assemble(w.svc)
	switch c {
	case complete:
		s.setDeferred(w, false)
		if h := state.Hash(); h != w.emitted && s.emit(w, Event{Service: w.svc, State: state, Revision: w.held.rev}) {
			w.emitted, w.invalidSent = h, false
		}
	case invalid:
		// The last good state stays with the consumer. When nothing was
		// queued yet, say so once, so that readiness does not wait for it.
		if w.emitted == "" && !w.invalidSent && s.emit(w, Event{Service: w.svc, Invalid: true, Revision: w.held.rev}) {
			w.invalidSent = true
		}
	case incomplete:
		s.log.Debug("holding incomplete service", "service", w.svc, "slices", w.held.spec.EndpointSlices, "missing", missing, "revision", w.held.rev)
	case absent:
		switch {
		case w.emitted == "":
			s.setDeferred(w, false) // nothing queued, nothing to remove
		case l == nil:
			return !s.isDeferred(w) // a deferred removal waits for a marker instead
		case l.confirmed():
			s.setDeferred(w, false)
			if s.emit(w, Event{Service: w.svc, Revision: l.rev}) {
				w.emitted, w.invalidSent = "", false
			}
		default:
			s.deferRemoval(w, *l)
		}
	}
	return false
}

func (s *Source) setDeferred(w *watch, d bool) {
	s.mu.Lock()
	w.deferred = d
	s.mu.Unlock()
}

func (s *Source) isDeferred(w *watch) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return w.deferred
}

// deferRemoval marks w as waiting for a synced marker. The control loop
// re-lists deferred watches when a marker of the current generation arrives
// for their shard; if one arrived between the list and now, w re-lists at once.
func (s *Source) deferRemoval(w *watch, l listing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !w.deferred {
		w.deferred = true
		s.stats.deferredDeletes.Add(1)
		s.log.Debug("service gone but its shard is not synced in this generation, keeping it",
			"service", w.svc, "shard", w.shard, "generation", l.generation, "revision", l.rev)
	}
	m, ok := s.ctl.markers[w.shard]
	if ok && l.generation != "" && s.ctl.generation == l.generation && m.generation == l.generation && m.rev > l.rev {
		kick(w.relist)
	}
}

// reportInvalid logs and counts each invalid value in err (from held: one
// *InvalidValueError per value, joined), one line naming the key.
func (s *Source) reportInvalid(w *watch, err error) {
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var iv *InvalidValueError
		if !errors.As(e, &iv) {
			s.log.Warn("bad value, holding the service", "service", w.svc, "err", e)
			continue
		}
		s.stats.invalid.WithLabelValues(iv.Reason).Inc()
		s.log.Warn("invalid value in etcd: skipping it, the service keeps its last good state",
			"key", iv.Key, "reason", iv.Reason, "err", iv.Err)
	}
}
