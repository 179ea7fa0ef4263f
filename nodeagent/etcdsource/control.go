package etcdsource

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// Generation probes (rebuilt): every ProbeInterval (jittered), at once after
// the etcd connection came back (reconnect.go) or the watch stream was
// opened again (stream.go), and probeRetry after one that failed.
const (
	// DefaultProbeInterval is Options.ProbeInterval's default: a backstop,
	// since a reconnection asks for a probe at once. Every probe is a
	// linearizable read: 1,000 agents probing every 30 s cost etcd and the
	// agents about 2 % of a core each (the 1,000-node scale run).
	DefaultProbeInterval = 5 * time.Minute
	probeRetry           = time.Second
	probeTimeout         = 5 * time.Second
)

// probeJitter returns the delay to the next periodic probe: uniform in
// [d/2, d], so that agents started together (a DaemonSet rollout) do not
// probe etcd together ever after.
func probeJitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d-d/2+1)
}

// control is what the control loop knows of generation and the synced
// markers. Guarded by Source.mu.
type control struct {
	// incarnation detects a wiped or replaced etcd (a changed generation,
	// or a revision gone backwards); it is shared with the relay's sink.
	incarnation keyspace.Incarnation
	generation  string // the generation loaded; "" when absent
	markers     map[int]marker
	// seen holds every generation loaded. When a load finds etcd's
	// revision gone backwards (an etcd restored from an older copy),
	// restoredAt is its revision and restoredGens the generations seen
	// before it: a marker of one of them written at or below restoredAt
	// is the older copy's and is not trusted (docs/contract.md,
	// "Generation and wiped etcd").
	seen         map[string]bool
	restoredAt   int64
	restoredGens map[string]bool
	// recheck: a list held a removal back because it saw a generation or
	// revision not loaded; the next probe that finds no rebuild re-lists
	// the deferred watches.
	recheck bool
	// epoch counts the rebuilds loaded. A service watch advances
	// incarnation's revision with the revisions its responses carry only
	// while the epoch of its latest list is current: a response of an etcd
	// replaced since must not raise the new etcd's baseline.
	epoch uint64
}

// marker is what the source uses of one synced/<shard> marker.
type marker struct {
	generation string
	rev        int64 // etcd mod revision of the marker
	// The writer's configuration (0 and "" from an older writer).
	shards  int
	cluster string
}

// parseMarker decodes a synced/<shard> value with keyspace.ParseMarker.
func parseMarker(kv *mvccpb.KeyValue) (marker, error) {
	m, err := keyspace.ParseMarker(kv.Value)
	if err != nil {
		return marker{}, fmt.Errorf("%s: %w", kv.Key, err)
	}
	return marker{generation: m.Generation, rev: kv.ModRevision, shards: m.Shards, cluster: m.Cluster}, nil
}

// runControl follows generation and the synced markers until ctx is done.
func (s *Source) runControl(ctx context.Context) {
	b := newRetry()
	for {
		start := time.Now()
		err := s.followControl(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			continue
		}
		s.log.Warn("generation/synced watch failed, reloading", "err", err)
		if time.Since(start) > retryResetAfter {
			b.Reset() // it worked for a while: start the delays over
		}
		if !b.Wait(ctx) {
			return
		}
	}
}

// followControl loads generation and every marker at one revision, then
// watches both from the next revision and probes generation every
// ProbeInterval. It returns nil when they must be loaded again.
func (s *Source) followControl(ctx context.Context) error {
	drain(s.probe)
	syncedPrefix := s.space.SyncedPrefix()
	resp, err := s.c.Txn(ctx).Then(
		clientv3.OpGet(s.space.Generation()),
		clientv3.OpGet(syncedPrefix, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return fmt.Errorf("load %s and %s: %w", s.space.Generation(), syncedPrefix, err)
	}
	rev := resp.Header.Revision
	gen := ""
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		gen = string(kvs[0].Value)
	}
	markers := map[int]marker{}
	for _, kv := range resp.Responses[1].GetResponseRange().GetKvs() {
		shard, m, err := s.markerOf(kv)
		if err != nil {
			s.log.Warn("ignoring bad synced marker", "err", err)
			continue
		}
		markers[shard] = m
	}
	s.checkMarkers(markers)
	if gen == "" && len(markers) == 0 {
		s.checkCluster(ctx)
	}
	s.load(gen, markers, rev)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.stats.watchesOpen.Add(2)
	defer s.stats.watchesOpen.Add(-2)
	genc := s.watchKeys(wctx, s.space.Generation(), "", rev+1, false)
	syncc := s.watchKeys(wctx, syncedPrefix, clientv3.GetPrefixRangeEnd(syncedPrefix), rev+1, false)
	tick := time.NewTicker(probeJitter(s.opts.ProbeInterval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-genc:
			if err := controlResponse(resp, ok, "generation"); err != nil || resp.CompactRevision != 0 {
				return err
			}
			if len(resp.Events) > 0 {
				return nil // reload: compares the generation and re-lists services if it changed
			}
		case resp, ok := <-syncc:
			if err := controlResponse(resp, ok, "synced/"); err != nil || resp.CompactRevision != 0 {
				return err
			}
			for _, ev := range resp.Events {
				s.applyMarker(ev)
			}
		case <-tick.C:
			if s.probeGeneration(ctx, tick) {
				return nil
			}
		case <-s.probe:
			if s.probeGeneration(ctx, tick) {
				return nil
			}
		}
	}
}

// probeGeneration probes once (rebuilt) and reports whether etcd was
// rebuilt. It sets tick to the next probe: ProbeInterval (jittered) after one that
// answered, at most probeRetry after one that failed (etcd may be coming
// back, and a reconnection asks only once).
func (s *Source) probeGeneration(ctx context.Context, tick *time.Ticker) bool {
	rebuilt, ok := s.rebuilt(ctx)
	switch {
	case rebuilt:
		return true
	case ok:
		tick.Reset(probeJitter(s.opts.ProbeInterval))
	default:
		tick.Reset(min(s.opts.ProbeInterval, probeRetry))
	}
	return false
}

// controlResponse turns a closed or failed control watch into an error. A
// compaction returns nil: the caller reloads.
func controlResponse(resp clientv3.WatchResponse, ok bool, what string) error {
	switch {
	case !ok:
		return fmt.Errorf("watch %s: channel closed", what)
	case resp.CompactRevision != 0:
		return nil
	case resp.Err() != nil:
		return fmt.Errorf("watch %s: %w", what, resp.Err())
	}
	return nil
}

// load installs a freshly read generation and marker set. When the
// generation changed, or etcd's revision went backwards (etcd was wiped and
// rebuilt), every watched service is re-listed. Otherwise deferred services
// whose shard now has a current marker are.
func (s *Source) load(gen string, markers map[int]marker, rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.ctl
	previous := c.incarnation.Revision()
	backwards := c.incarnation.Backwards(rev)
	changed, why := c.incarnation.Observe(gen, gen != "", rev)
	if backwards {
		c.restoredAt, c.restoredGens = rev, maps.Clone(c.seen)
	}
	if gen != "" {
		c.seen[gen] = true
	}
	if changed {
		c.epoch++
		s.stats.generationChanges.Add(1)
		s.log.Info("etcd generation changed, re-listing every watched service", "why", why,
			"from", c.generation, "to", gen, "revision", rev, "previous_revision", previous, "services", len(s.watches))
	}
	c.generation, c.markers = gen, markers
	for _, w := range s.watches {
		if changed || (w.deferred && c.current(w.shard)) {
			kick(w.relist)
		}
	}
	if changed {
		for relist := range s.namespaces {
			kick(relist)
		}
	}
}

// current says whether shard has a trusted marker of the current
// generation. Caller holds Source.mu.
func (c *control) current(shard int) bool {
	m, ok := c.markers[shard]
	return ok && c.generation != "" && m.generation == c.generation && !c.restored(m)
}

// restored says whether m is a marker of an older copy of etcd, not
// rewritten since the copy was restored. Caller holds Source.mu.
func (c *control) restored(m marker) bool {
	return m.rev <= c.restoredAt && c.restoredGens[m.generation]
}

// applyMarker applies one event under synced/ and re-lists the deferred
// services of a shard that became synced in the current generation.
func (s *Source) applyMarker(ev *clientv3.Event) {
	shard, ok := s.space.ParseSynced(string(ev.Kv.Key))
	if !ok {
		s.log.Warn("ignoring a key under synced/ that is not a marker", "key", string(ev.Kv.Key))
		return
	}
	var m marker
	if ev.Type != mvccpb.DELETE {
		var err error
		if m, err = parseMarker(ev.Kv); err != nil {
			s.log.Warn("ignoring bad synced marker", "err", err)
			return
		}
	}
	if ev.Type != mvccpb.DELETE {
		s.checkMarker(shard, m)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctl.incarnation.Advance(ev.Kv.ModRevision)
	if ev.Type == mvccpb.DELETE {
		delete(s.ctl.markers, shard)
		return
	}
	s.ctl.markers[shard] = m
	if !s.ctl.current(shard) {
		return
	}
	s.log.Debug("shard synced", "shard", shard, "generation", m.generation, "revision", m.rev)
	for _, w := range s.watches {
		if w.shard == shard && w.deferred {
			kick(w.relist)
		}
	}
}

// markerOf parses the shard from a synced/<shard> key (strictly, with
// keyspace.Space.ParseSynced) and the marker from its value.
func (s *Source) markerOf(kv *mvccpb.KeyValue) (int, marker, error) {
	shard, ok := s.space.ParseSynced(string(kv.Key))
	if !ok {
		return 0, marker{}, fmt.Errorf("%s: not a synced/<shard> key", kv.Key)
	}
	m, err := parseMarker(kv)
	return shard, m, err
}

// rebuilt reads generation once and reports whether it differs from the
// loaded one or etcd's revision went backwards, and whether etcd answered
// (an error counts as not rebuilt).
func (s *Source) rebuilt(ctx context.Context) (rebuilt, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	resp, err := s.c.Get(ctx, s.space.Generation())
	s.stats.probes.Add(1)
	if err != nil {
		s.log.Debug("generation probe failed", "err", err)
		return false, false
	}
	gen := ""
	if len(resp.Kvs) > 0 {
		gen = string(resp.Kvs[0].Value)
	} else {
		s.checkCluster(ctx) // nothing of this cluster yet: is etcd another cluster's?
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rebuilt, _ := s.ctl.incarnation.Differs(gen, gen != "", resp.Header.Revision); rebuilt {
		return true, true
	}
	s.ctl.incarnation.Advance(resp.Header.Revision)
	if s.ctl.recheck {
		s.ctl.recheck = false
		for _, w := range s.watches {
			if w.deferred {
				kick(w.relist)
			}
		}
	}
	return false, true
}

// noticeListing asks the control loop to probe now when a service list saw
// a generation or revision it does not know: etcd may have been rebuilt.
// It reports whether the list's marker cannot confirm a removal: etcd may
// have been rebuilt since the control loop's load, or the marker is a
// restored older copy's.
//
// A list that is not stale raises the revision seen, and makes w's watch
// responses raise it too (followed), until the next rebuild is loaded.
func (s *Source) noticeListing(w *watch, l listing) (suspect bool) {
	s.mu.Lock()
	stale, _ := s.ctl.incarnation.Differs(l.generation, l.generation != "", l.rev)
	restored := s.ctl.restored(l.marker)
	s.ctl.recheck = s.ctl.recheck || stale
	w.epoch, w.current = s.ctl.epoch, !stale
	if !stale {
		s.ctl.incarnation.Advance(l.rev)
	}
	s.mu.Unlock()
	if stale {
		kick(s.probe)
	}
	return stale || restored
}

// followed raises the revision seen with rev, the header revision of a
// response of w's watch, when w's latest list was not stale and no rebuild
// was loaded since. The revision seen is then as fresh as the newest
// response of any watch, not only as the latest probe: an etcd restored
// from a copy taken after the latest probe, but older than a change the
// agent received, is seen going backwards (docs/contract.md, "Generation
// and wiped etcd").
func (s *Source) followed(w *watch, rev int64) {
	s.mu.Lock()
	if w.current && w.epoch == s.ctl.epoch {
		s.ctl.incarnation.Advance(rev)
	}
	s.mu.Unlock()
}
