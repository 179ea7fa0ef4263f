package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
)

// Agent keeps one node's datapath in step with the services it needs.
// Create it with New and run it with Run. Its methods are safe for
// concurrent use.
//
// It orchestrates: the etcd source (what etcd holds of the services
// watched), the load set (which services to load, loadset.go) and the
// paced writer of change sets (writer.go), with its goroutines under one
// errgroup.
type Agent struct {
	opts Options
	log  *slog.Logger
	src  *etcdsource.Source
	dp   datapath.Datapath
	m    *metrics

	wake chan struct{} // capacity 1: the main loop has something to do

	// Owned by the main loop (Run's goroutine).
	w    *writer // set under mu (Healthy reads it)
	park parking
	pace flushPace
	// paceTimer waits out the flush pace; one per agent, reused.
	paceTimer *time.Timer
	swept     bool
	programs  *datapath.Programs // nil when the datapath has none

	mu        sync.Mutex
	running   bool
	ready     bool
	adopted   bool // orphan VIPs were resolved (or need not be)
	load      *loadSet
	pending   map[keyspace.Service]item
	snapshot  tableSnapshot
	orphanIPs []netip.Addr // VIPs of orphan frontends, published by the main loop until the sweep
	// parkedNames are the parked services, published by the main loop.
	parkedNames []keyspace.Service
}

// tableSnapshot are figures of the table published by the main loop.
type tableSnapshot struct {
	frontends, slots, backends int
	services, orphans          int
}

// New returns an agent that reads etcd through c and writes dp. It does
// nothing until Run. The agent does not close c or dp.
func New(c etcdsource.Client, dp datapath.Datapath, opts Options) (*Agent, error) {
	if c == nil || dp == nil {
		return nil, errors.New("nodeagent: nil etcd client or datapath")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	idle := opts.IdleTimeout
	if !opts.OnDemand || len(opts.ServiceCIDRs) == 0 {
		idle = -1 // nothing is loaded on demand
	}
	a := &Agent{
		opts:    opts,
		log:     opts.Logger,
		src:     etcdsource.New(c, opts.Source),
		dp:      dp,
		m:       newMetrics(),
		wake:    make(chan struct{}, 1),
		load:    newLoadSet(opts.Services, len(opts.Namespaces), opts.MaxServices, idle, opts.Now),
		pending: map[keyspace.Service]item{},
		park:    newParking(),
		pace:    flushPace{window: opts.FlushWindow},
	}
	if len(opts.Services) > opts.MaxServices {
		a.log.Warn("more declared services than --max-services; all are loaded, none on demand",
			"declared", len(opts.Services), "max_services", opts.MaxServices)
	}
	if opts.Registerer != nil {
		if err := a.m.register(opts.Registerer, a); err != nil {
			return nil, fmt.Errorf("nodeagent: register metrics: %w", err)
		}
	}
	return a, nil
}

// Source returns the agent's etcd source, for its Stats.
func (a *Agent) Source() *etcdsource.Source { return a.src }

// Run dumps the datapath, starts the etcd source and keeps the datapath in
// step until ctx is done; it then returns ctx.Err(). It returns another
// error when the datapath cannot be dumped at start, attaching the
// datapath's programs fails, or the source fails. Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("nodeagent: Run called twice")
	}
	a.running = true
	a.mu.Unlock()

	dump, err := a.dp.Dump(ctx)
	if err != nil {
		return fmt.Errorf("nodeagent: dump datapath: %w", err)
	}
	w := newWriter(a.dp, nodemodel.NewTable(dump), a.opts, a.m)
	a.mu.Lock()
	a.w = w
	a.mu.Unlock()
	a.publish()
	if n := dump.Len(); n > 0 {
		a.log.Info("datapath holds entries from a previous run; keeping them until the state is known",
			"frontends", len(dump.Frontends), "slots", len(dump.Slots), "backends", len(dump.Backends))
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := a.src.Run(gctx); err != nil && gctx.Err() == nil {
			return fmt.Errorf("nodeagent: etcd source: %w", err)
		}
		return nil
	})
	a.mu.Lock()
	for _, svc := range a.load.start() {
		a.src.Watch(svc)
	}
	a.mu.Unlock()
	for _, ns := range a.opts.Namespaces {
		g.Go(func() error { return a.runNamespace(gctx, ns) })
	}
	g.Go(func() error { return a.runStartup(gctx) })
	g.Go(func() error { return a.loop(gctx, g) })
	a.log.Info("node agent running", "node", a.opts.NodeName, "services", len(a.opts.Services),
		"namespaces", a.opts.Namespaces, "on_demand", a.onDemandEnabled(), "service_cidrs", a.opts.ServiceCIDRs)

	if err := g.Wait(); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

// loop is the main loop: it owns the table, flushes queued changes and
// evicts idle services. It starts the miss reader in g once the programs
// are attached.
func (a *Agent) loop(ctx context.Context, g *errgroup.Group) error {
	var idle <-chan time.Time
	if a.opts.IdleTimeout > 0 && a.onDemandEnabled() {
		t := time.NewTicker(min(max(a.opts.IdleTimeout/4, 10*time.Millisecond), time.Minute))
		defer t.Stop()
		idle = t.C
	}
	gc := time.NewTimer(time.Hour)
	defer gc.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		if err := a.step(ctx, g); err != nil {
			return err
		}
		if a.w.hasGarbage() {
			// Unreferenced entries wait for a quiet moment.
			gc.Reset(max(2*a.opts.FlushWindow, garbageDelay))
		}
		if d, ok := a.nextParkRetry(); ok {
			retry.Reset(d)
		}
		select {
		case <-retry.C:
			if err := a.retryParked(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-a.wake:
		case <-a.src.Ready():
		case <-idle:
			a.evictIdle()
		case <-gc.C:
			if !a.w.hasGarbage() {
				continue
			}
			if err := a.writeChanges(ctx, nil); err != nil {
				return err
			}
			a.publish()
		}
	}
}

// step flushes what is queued, when the flush pace allows (at once after
// quiet, else at the end of the window of the latest flush), and then does
// what the new state allows: programs and readiness, the orphan sweep.
func (a *Agent) step(ctx context.Context, g *errgroup.Group) error {
	a.drain()
	if a.queueDepth() > 0 {
		if w := a.pace.wait(time.Now()); w > 0 {
			if a.paceTimer == nil {
				a.paceTimer = time.NewTimer(w)
			} else {
				a.paceTimer.Reset(w) // stopped or fired and drained: no stale tick (Go 1.23 timers)
			}
			select {
			case <-ctx.Done():
				a.paceTimer.Stop()
				return ctx.Err()
			case <-a.paceTimer.C:
			}
		}
		if err := a.flush(ctx); err != nil {
			return err
		}
		a.pace.flushed(time.Now())
	}
	if err := a.becomeReady(ctx, g); err != nil {
		return err
	}
	return a.maybeSweep(ctx)
}

// becomeReady marks the agent ready once every initial service has been
// delivered and applied, after attaching the datapath's programs
// (Datapath.Attach), whose misses it then feeds to ReportMiss.
func (a *Agent) becomeReady(ctx context.Context, g *errgroup.Group) error {
	a.mu.Lock()
	wait := a.ready || !a.load.initialDone()
	a.mu.Unlock()
	if wait {
		return nil
	}
	progs, err := a.dp.Attach(ctx, a.opts.ServiceCIDRs)
	if err != nil {
		return fmt.Errorf("nodeagent: attach programs: %w", err)
	}
	if progs != nil { // nil: the datapath has no programs
		a.programs = progs
		a.log.Info("socket programs attached")
		g.Go(func() error {
			a.consumeMisses(ctx, progs.Misses())
			return nil
		})
	}
	a.mu.Lock()
	a.ready = true
	a.mu.Unlock()
	a.log.Info("first complete reconcile applied: ready", "services", a.w.table.Services(),
		"entries", a.w.table.Applied().Len())
	return nil
}

// Ready reports whether the first complete reconcile has been applied, and
// if not, why. An agent whose --shards or --cluster disagrees with the
// relays' (etcdsource.Source.Mismatch) is not ready, with that reason.
func (a *Agent) Ready() (bool, string) {
	if why := a.src.Mismatch(); why != "" {
		return false, why
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.ready:
		return true, ""
	case !a.running:
		return false, "not running"
	}
	return false, a.load.waitingFor()
}

// Miss resolution: a queue of missQueue misses served by missWorkers
// goroutines, each miss given missTimeout; a miss that finds the queue
// full is dropped (counted; the next connect reports it again).
const (
	missQueue   = 1024
	missWorkers = 8
	missTimeout = 2 * time.Second
)

// consumeMisses feeds the programs' miss reports to ReportMiss, from
// missWorkers goroutines, until the channel closes or ctx is done.
func (a *Agent) consumeMisses(ctx context.Context, misses <-chan netip.AddrPort) {
	queue := make(chan netip.AddrPort, missQueue)
	var wg sync.WaitGroup
	for range missWorkers {
		wg.Go(func() {
			for m := range queue {
				rctx, cancel := context.WithTimeout(ctx, missTimeout)
				if _, _, err := a.ReportMiss(rctx, m); err != nil && ctx.Err() == nil {
					a.log.Debug("resolving a miss", "addr", m, "err", err)
				}
				cancel()
			}
		})
	}
	defer wg.Wait()
	defer close(queue)
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-misses:
			if !ok {
				return
			}
			select {
			case queue <- m:
			default:
				a.m.missesDropped.Inc()
			}
		}
	}
}

// publish stores the table's figures for Stats, and the orphans' VIPs for
// the startup goroutine until the sweep. Called by the main loop.
func (a *Agent) publish() {
	table := a.w.table
	st := table.Applied()
	snap := tableSnapshot{
		frontends: len(st.Frontends), slots: len(st.Slots), backends: len(st.Backends),
		services: table.Services(),
	}
	var ips []netip.Addr
	if !a.swept {
		orphans := table.Orphans()
		snap.orphans = len(orphans)
		for _, k := range orphans {
			ips = append(ips, k.AddrPort().Addr())
		}
		ips = slices.Compact(ips) // orphans are sorted by VIP
	}
	a.mu.Lock()
	a.snapshot = snap
	a.orphanIPs = ips
	a.mu.Unlock()
}

// kick does a non-blocking send on a capacity-1 signal channel.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
