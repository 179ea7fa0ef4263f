package etcdsink

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshrelay/meshrelay/internal/backoff"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/relay/coalesce"
)

// ErrFenced is returned by Run when Options.Fence refused a transaction:
// this relay must stop writing. The refused services stay dirty, so a later
// Run (e.g. after winning the shard again) writes them.
var ErrFenced = errors.New("etcdsink: fence comparison failed")

// errGenerationChanged reports a transaction refused because etcd's
// generation is no longer the one the Sink loaded: reload, then retry.
var errGenerationChanged = errors.New("etcd generation changed")

// Sink writes desired services into etcd. Create it with New; Set,
// Complete, Synced and Stats may be called from any goroutine, Run from one.
// Metrics returns its Prometheus collectors.
type Sink struct {
	client Client
	opts   Options
	space  keyspace.Space
	log    *slog.Logger
	queue  *coalesce.Queue[task]
	// markersDue is when the markers became due while services were still
	// pending in the queue (zero: not deferred). Owned by Run.
	markersDue time.Time
	limiter    *rate.Limiter

	// markersWaiting: a shard's marker waits for services not yet in
	// etcd (writeMarkers); every batch tries the markers again. Owned by Run.
	markersWaiting bool

	mu sync.Mutex // guards the fields below up to the blank line
	// desired is the latest desired state of every service; a nil svc
	// means "delete", kept until the delete is written.
	desired map[keyspace.Service]desiredState
	// claims maps a VIP to the desired services listing it.
	claims map[string]map[keyspace.Service]struct{}
	// present is the service set of the latest Complete (nil before).
	present map[keyspace.Service]struct{}
	// lastComplete is when Complete was last called: the complete state
	// of a fresh upstream stream.
	lastComplete time.Time
	// authz are the authorization policy keys (authorization.go); its
	// written and held sets are owned by the Run goroutine.
	authz authorizations

	// Owned by the Run goroutine.
	written  map[keyspace.Service]*writtenService
	vipOwner map[string]keyspace.Service
	markers  map[int]keyspace.Marker
	stray    []string // non-canonical keys found by the last load
	// strayDeleted counts the stray keys deleted since the last load.
	strayDeleted int
	guard        deleteGuard
	// unwritableSet are services etcd refused for their size.
	unwritableSet map[keyspace.Service]struct{}
	progress      progress
	owned         map[int]*ownedShard // shards written, with Options.Fencer
	// bootstrapping is true until synced markers are written for the
	// current generation; the token bucket runs at the bootstrap rate.
	bootstrapping bool

	// genMu serialises reload with the generation checks of the watcher,
	// so that a check never compares etcd's new generation with the old.
	genMu           sync.Mutex
	incarnation     keyspace.Incarnation // guarded by genMu
	restoredGen     string               // generation of an etcd restored from an older copy, to replace; guarded by genMu
	gen             atomic.Pointer[string]
	running         atomic.Bool
	reloadNeeded    atomic.Bool
	releaseAsked    atomic.Bool  // ReleaseDeletions was called
	heldCount       atomic.Int64 // len(guard.held), for metrics and Stats
	heldSince       atomic.Int64 // guard.since in unix nanoseconds, 0 when nothing is held
	authzHeld       atomic.Int64 // len(authz.held)
	authzHeldSince  atomic.Int64 // authz.since in unix nanoseconds, 0 when nothing is held
	authzInEtcd     atomic.Int64 // len(authz.written)
	unwritableCount atomic.Int64 // len(unwritableSet)

	synced     chan struct{}
	syncedOnce sync.Once
	metrics    *metrics
	shards     *shardState
}

// desiredState is one Set.
type desiredState struct {
	svc      *model.Service // nil: delete the service
	observed time.Time
}

// task is a unit of dirty state in the coalescing queue.
type task struct {
	kind  taskKind
	svc   keyspace.Service       // kindService
	authz keyspace.Authorization // kindAuthorization
}

type taskKind uint8

const (
	kindService       taskKind = iota // write one service
	kindMarkers                       // sweep after Complete, then write synced markers
	kindWake                          // nothing to write; wakes Run to act on reloadNeeded
	kindShards                        // the Fencer's shards changed: take over, or stop writing
	kindAuthorization                 // write one authorization policy
)

// New returns a Sink writing through c. Nothing happens until Run. Check
// opts with Options.Validate first: New fills zero fields with defaults
// and does not report out-of-range ones.
func New(c Client, opts Options) *Sink {
	opts = opts.withDefaults()
	s := &Sink{
		client:        c,
		opts:          opts,
		space:         keyspace.New(opts.Cluster),
		log:           opts.Logger,
		queue:         coalesce.New[task](coalesce.Options{Window: opts.Window, MaxDelay: opts.MaxDelay}),
		limiter:       rate.NewLimiter(rate.Limit(opts.BootstrapOpsPerSecond), opts.Burst),
		desired:       make(map[keyspace.Service]desiredState),
		claims:        make(map[string]map[keyspace.Service]struct{}),
		written:       make(map[keyspace.Service]*writtenService),
		vipOwner:      make(map[string]keyspace.Service),
		markers:       make(map[int]keyspace.Marker),
		unwritableSet: make(map[keyspace.Service]struct{}),
		guard: deleteGuard{held: make(map[keyspace.Service]struct{}), approved: make(map[keyspace.Service]struct{}),
			passed: make(map[keyspace.Service]struct{})},
		owned:         make(map[int]*ownedShard),
		authz:         newAuthorizations(),
		shards:        newShardState(),
		bootstrapping: true,
		synced:        make(chan struct{}),
	}
	s.metrics = newMetrics(s.queue.Len, s.HeldDeletions)
	s.gen.Store(new(string))
	return s
}

// Set records the desired state of svc: desired, or deletion when desired
// is nil. observed is when the upstream push that produced it arrived (zero
// means now). It never blocks on etcd; the latest Set of a service wins.
// The Sink keeps desired and reads it later: the caller must not modify it
// afterwards.
func (s *Sink) Set(svc keyspace.Service, desired *model.Service, observed time.Time) {
	s.SetAll([]Desired{{Service: svc, State: desired, Observed: observed}})
}

// Desired is one service's desired state for SetAll: State nil deletes it.
type Desired struct {
	Service  keyspace.Service
	State    *model.Service
	Observed time.Time
}

// SetAll is Set for every entry of batch at once: the writer never sees
// part of the batch. The relay hands over everything one upstream update
// changed this way, so that the mass-deletion guard judges the whole
// update, never the first services of it a leading-edge write picks up.
func (s *Sink) SetAll(batch []Desired) {
	now := time.Now()
	marked := batch[:0:0]
	s.mu.Lock()
	for _, d := range batch {
		if d.State != nil && d.State.Spec == nil {
			s.log.Error("Set without a spec: ignored", "service", d.Service)
			continue
		}
		if d.Observed.IsZero() {
			d.Observed = now
		}
		s.unclaimLocked(d.Service)
		s.desired[d.Service] = desiredState{svc: d.State, observed: d.Observed}
		s.claimLocked(d.Service)
		marked = append(marked, d)
	}
	s.mu.Unlock()
	// One MarkAll: the whole batch is marked under one lock at one
	// instant, however long it is.
	tasks := make([]task, len(marked))
	for i, d := range marked {
		tasks[i] = task{svc: d.Service}
	}
	s.queue.MarkAll(tasks)
}

// Complete says upstream state is complete and present lists every service
// in it. Every other service the Sink knows - desired, or found in etcd -
// is deleted (this is the only way a service disappears without an explicit
// Set(svc, nil): an upstream disconnect deletes nothing). Once everything
// dirty at this point is written, synced/<shard> is written for every shard.
func (s *Sink) Complete(present []keyspace.Service) {
	set := make(map[keyspace.Service]struct{}, len(present))
	for _, svc := range present {
		set[svc] = struct{}{}
	}
	now := time.Now()
	var gone []task
	s.mu.Lock()
	s.present = set
	s.lastComplete = now
	for svc, d := range s.desired {
		if _, ok := set[svc]; !ok && d.svc != nil {
			s.unclaimLocked(svc)
			s.desired[svc] = desiredState{observed: now}
			gone = append(gone, task{svc: svc})
		}
	}
	s.mu.Unlock()
	s.queue.MarkAll(gone)
	// Services only found in etcd are swept by the writer, which owns
	// the written cache, when it handles this task.
	s.queue.Mark(task{kind: kindMarkers})
}

// Synced is closed once the first synced markers are in etcd (written, or
// found already up to date): the relay's readiness.
func (s *Sink) Synced() <-chan struct{} { return s.synced }

func (s *Sink) generation() string { return *s.gen.Load() }

// Run loads what etcd holds, makes sure it has a generation, then writes
// dirty services until ctx is done. It returns ctx.Err(), or an error
// wrapping ErrFenced when Options.Fence refused a write. Run may be called
// again after it returned; it reloads etcd's state first.
func (s *Sink) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("etcdsink: Run is already running")
	}
	defer s.running.Store(false)

	retry := backoff.New(s.opts.Backoff)
	for {
		err := s.reload(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.metrics.recordError(err)
		s.log.Warn("loading etcd state failed, retrying", "err", err)
		if !retry.Wait(ctx) {
			return ctx.Err()
		}
	}
	retry.Reset()
	s.progress.done(time.Now(), nil)

	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.watchGeneration(watchCtx) })
	defer func() {
		stopWatch()
		wg.Wait()
	}()

	for {
		tasks, err := s.queue.Next(ctx)
		if err != nil {
			return err
		}
		s.progress.start(time.Now())
		err = s.process(ctx, tasks)
		s.progress.done(time.Now(), err)
		switch {
		case err == nil:
			retry.Reset()
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrFenced):
			s.metrics.recordError(err)
			s.log.Warn("fenced: stopping writes", "err", err)
			return err
		case errors.Is(err, errGenerationChanged):
			// The next batch reloads; nothing to wait for.
		default:
			s.metrics.recordError(err)
			s.log.Warn("etcd write failed, retrying", "err", err, "queue", s.queue.Len())
			if !retry.Wait(ctx) {
				return ctx.Err()
			}
		}
	}
}

// bootstrap runs the token bucket at the bootstrap rate until the next
// synced markers are all written: a reload after a wiped etcd and a shard
// takeover rewrite whole shards, which must not wait at the steady rate
// meant for churn.
func (s *Sink) bootstrap() {
	s.limiter.SetLimit(rate.Limit(s.opts.BootstrapOpsPerSecond))
	s.bootstrapping = true
}

// process handles one batch from the queue. Whatever it could not write
// is marked dirty again before it returns an error.
func (s *Sink) process(ctx context.Context, tasks []task) error {
	if s.reloadNeeded.Load() {
		s.queue.MarkAll(tasks)
		if err := s.reload(ctx); err != nil {
			s.reloadNeeded.Store(true)
			return err
		}
		s.bootstrap()
		return nil
	}

	for _, t := range tasks {
		if t.kind == kindShards {
			if err := s.syncShards(ctx); err != nil {
				s.queue.MarkAll(tasks)
				return err
			}
			break
		}
	}

	var (
		svcs  []keyspace.Service
		authz []keyspace.Authorization
	)
	markers := s.markersWaiting
	for _, t := range tasks {
		switch t.kind {
		case kindService:
			svcs = append(svcs, t.svc)
		case kindAuthorization:
			authz = append(authz, t.authz)
		case kindMarkers:
			markers = true
		}
	}
	if markers {
		svcs = append(svcs, s.sweepWritten()...)
		authz = append(authz, s.sweepAuthorizations()...)
	}
	release := s.releaseAsked.Swap(false)
	svcs, heldChanged := s.guardDeletions(svcs, release) // sorted for writing, deduplicated
	if heldChanged && s.hasPresent() {
		markers = true // held_deletions changed
	}
	authz = s.guardAuthorizations(authz, release) // sorted for writing, deduplicated

	if err := s.writeServices(ctx, svcs); err != nil {
		if markers {
			s.queue.Mark(task{kind: kindMarkers})
		}
		s.markAuthorizations(authz)
		return err
	}
	if err := s.writeAuthorizations(ctx, authz); err != nil {
		if markers {
			s.queue.Mark(task{kind: kindMarkers})
		}
		return err
	}
	if markers && s.deferMarkers() {
		s.queue.Mark(task{kind: kindMarkers})
		return nil
	}
	if markers {
		if err := s.deleteStray(ctx); err != nil {
			s.queue.Mark(task{kind: kindMarkers})
			return err
		}
		if err := s.writeMarkers(ctx); err != nil {
			s.queue.Mark(task{kind: kindMarkers})
			return err
		}
	}
	return nil
}

// deferMarkers says whether the synced markers should wait: services are
// still pending in the queue (a leading-edge release took the markers
// with some services while others wait for their window's trailing edge).
// It only packs marker writes, for at most MaxDelay even while new changes
// keep arriving; what makes a marker true (every desired service of its
// shard in etcd, however long that takes) is checked by writeMarkers.
func (s *Sink) deferMarkers() bool {
	now := time.Now()
	if s.queue.Len() == 0 {
		s.markersDue = time.Time{}
		return false
	}
	if s.markersDue.IsZero() {
		s.markersDue = now
	}
	if now.Sub(s.markersDue) < s.opts.MaxDelay {
		return true
	}
	s.markersDue = time.Time{}
	return false
}

// sweepWritten turns every service etcd holds that is neither desired nor
// in the latest Complete into a desired deletion, and returns them.
func (s *Sink) sweepWritten() []keyspace.Service {
	now := time.Now()
	var gone []keyspace.Service
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.present == nil {
		return nil
	}
	for svc := range s.written {
		if _, ok := s.desired[svc]; ok || !s.owns(keyspace.Shard(svc, s.opts.Shards)) {
			continue
		}
		if _, ok := s.present[svc]; !ok {
			s.desired[svc] = desiredState{observed: now}
			gone = append(gone, svc)
		}
	}
	return gone
}

func (s *Sink) hasPresent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.present != nil
}

// generationChanged asks Run to reload and rewrite everything.
func (s *Sink) generationChanged(why string) {
	if s.reloadNeeded.CompareAndSwap(false, true) {
		s.metrics.generationChanges.Add(1)
		s.log.Warn("etcd generation changed: reloading and rewriting the desired state", "why", why)
		s.queue.Mark(task{kind: kindWake})
	}
}

// claimLocked records the VIPs of svc's desired state in s.claims.
func (s *Sink) claimLocked(svc keyspace.Service) {
	d := s.desired[svc].svc
	if d == nil {
		return
	}
	for _, ip := range d.Spec.GetVips() {
		m := s.claims[ip]
		if m == nil {
			m = make(map[keyspace.Service]struct{})
			s.claims[ip] = m
		}
		m[svc] = struct{}{}
	}
}

// unclaimLocked removes the VIPs of svc's current desired state from s.claims.
func (s *Sink) unclaimLocked(svc keyspace.Service) {
	d := s.desired[svc].svc
	if d == nil {
		return
	}
	for _, ip := range d.Spec.GetVips() {
		if m := s.claims[ip]; m != nil {
			delete(m, svc)
			if len(m) == 0 {
				delete(s.claims, ip)
			}
		}
	}
}

// claimant returns the first (by name) desired service other than not that
// lists ip, if any.
func (s *Sink) claimant(ip string, not keyspace.Service) (keyspace.Service, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best keyspace.Service
	found := false
	for svc := range s.claims[ip] {
		if svc != not && (!found || compareServices(svc, best) < 0) {
			best, found = svc, true
		}
	}
	return best, found
}

// claimed reports whether svc's desired state lists ip.
func (s *Sink) claimed(ip string, svc keyspace.Service) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.claims[ip][svc]
	return ok
}

func compareServices(a, b keyspace.Service) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}
