package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
)

// Agent keeps one node's datapath in step with the services it needs.
// Create it with New and run it with Run. Its methods are safe for
// concurrent use.
type Agent struct {
	opts  Options
	log   *slog.Logger
	etcd  etcdsource.Client
	src   *etcdsource.Source
	dp    datapath.Datapath
	space keyspace.Space

	entries *rate.Limiter // map entries per second
	applies *rate.Limiter // change sets per second

	wake chan struct{}  // capacity 1: the main loop has something to do
	bg   sync.WaitGroup // goroutines started by the main loop (miss reader)

	// Owned by the main loop (Run's goroutine).
	table     *nodemodel.Table
	installed bool
	swept     bool
	lagWait   []lagSample // services applied in the current chunk whose lag is observed at commit
	// garbageSince is when unreferenced entries were first left in the
	// datapath for a later change set (zero when none are).
	garbageSince time.Time

	mu         sync.Mutex
	running    bool
	services   map[keyspace.Service]*service
	pending    map[keyspace.Service]item
	vips       map[netip.Addr]keyspace.Service
	conflicted map[*service]struct{} // services with frontends owned by another
	nsListed   int                   // namespaces whose initial listing is done
	adopted    bool                  // orphan VIPs were resolved (or need not be)
	ready      bool
	programs   Programs
	snapshot   tableSnapshot
	orphanIPs  []netip.Addr // VIPs of orphan frontends, published by the main loop until the sweep

	stats counters
	lag   histogram // propagation lag, seconds
	batch histogram // entries per applied change set
}

// service is what the agent knows of one service it loads. Guarded by Agent.mu.
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
	vips      []netip.Addr // VIPs indexed in Agent.vips for it
	lastUsed  time.Time
	state     *model.Service // the state applied (shared with the source, read-only)
}

// item is one queued change of a service: the latest event from the
// source, or an agent-made drop (eviction).
type item struct {
	ev   etcdsource.Event
	drop bool
}

// lagSample is a service applied in the current chunk with the newest
// observed_unix_nano of its state.
type lagSample struct {
	observed int64
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
	opts = opts.withDefaults()
	for _, ns := range opts.Namespaces {
		if ns == "" || strings.Contains(ns, "/") {
			return nil, fmt.Errorf("nodeagent: namespace %q: want a name without '/'", ns)
		}
	}
	for _, p := range opts.ServiceCIDRs {
		if !p.IsValid() {
			return nil, fmt.Errorf("nodeagent: invalid service CIDR %v", p)
		}
	}
	a := &Agent{
		opts:       opts,
		log:        opts.Logger,
		etcd:       c,
		src:        etcdsource.New(c, opts.Source),
		dp:         dp,
		space:      keyspace.New(opts.Cluster),
		entries:    rate.NewLimiter(rate.Limit(opts.MaxMapOpsPerSecond), opts.Burst),
		applies:    rate.NewLimiter(rate.Limit(opts.MaxAppliesPerSecond), max(1, int(opts.MaxAppliesPerSecond/10))),
		wake:       make(chan struct{}, 1),
		services:   map[keyspace.Service]*service{},
		pending:    map[keyspace.Service]item{},
		vips:       map[netip.Addr]keyspace.Service{},
		conflicted: map[*service]struct{}{},
		lag:        newHistogram(lagBuckets),
		batch:      newHistogram(batchBuckets),
	}
	now := opts.Now()
	for _, svc := range opts.Services {
		if svc.Namespace == "" || svc.Name == "" {
			return nil, fmt.Errorf("nodeagent: service %q: want namespace/name", svc)
		}
		a.services[svc] = &service{key: svc, declared: true, initial: true, lastUsed: now}
	}
	if len(opts.Services) > opts.MaxServices {
		a.log.Warn("more declared services than --max-services; all are loaded, none on demand",
			"declared", len(opts.Services), "max_services", opts.MaxServices)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(newCollector(a)); err != nil {
			return nil, fmt.Errorf("nodeagent: register metrics: %w", err)
		}
	}
	return a, nil
}

// Source returns the agent's etcd source, for its Stats.
func (a *Agent) Source() *etcdsource.Source { return a.src }

// Run dumps the datapath, starts the etcd source and keeps the datapath in
// step until ctx is done; it then returns ctx.Err(). It returns an error
// early only when the datapath cannot be dumped at start or
// Options.Install fails. Run may be called once.
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
	a.table = nodemodel.NewTable(dump)
	a.publish()
	if n := dump.Len(); n > 0 {
		a.log.Info("datapath holds entries from a previous run; keeping them until the state is known",
			"frontends", len(dump.Frontends), "slots", len(dump.Slots), "backends", len(dump.Backends))
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.src.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("etcd source stopped", "err", err)
		}
	})
	a.mu.Lock()
	for svc, s := range a.services {
		s.watched = true
		a.src.Watch(svc)
	}
	a.mu.Unlock()
	for _, ns := range a.opts.Namespaces {
		wg.Go(func() { a.runNamespace(ctx, ns) })
	}
	wg.Go(func() { a.pull(ctx) })
	wg.Go(func() { a.runStartup(ctx) })
	a.log.Info("node agent running", "node", a.opts.NodeName, "services", len(a.opts.Services),
		"namespaces", a.opts.Namespaces, "on_demand", a.onDemandEnabled(), "service_cidrs", a.opts.ServiceCIDRs)

	err = a.loop(ctx)
	cancel()
	wg.Wait()
	a.mu.Lock()
	progs := a.programs
	a.mu.Unlock()
	if progs != nil {
		if cerr := progs.Close(); cerr != nil {
			a.log.Warn("closing programs", "err", cerr)
		}
	}
	a.bg.Wait() // the miss reader ends with ctx, or when Close closed its channel
	return err
}

// loop is the main loop: it owns the table, flushes queued changes and
// evicts idle services.
func (a *Agent) loop(ctx context.Context) error {
	var idle <-chan time.Time
	if a.opts.IdleTimeout > 0 && a.onDemandEnabled() {
		t := time.NewTicker(min(max(a.opts.IdleTimeout/4, 10*time.Millisecond), time.Minute))
		defer t.Stop()
		idle = t.C
	}
	gc := time.NewTimer(time.Hour)
	defer gc.Stop()
	for {
		if err := a.step(ctx); err != nil {
			return err
		}
		if !a.garbageSince.IsZero() {
			// Unreferenced entries wait for a quiet moment.
			gc.Reset(max(2*a.opts.FlushWindow, garbageDelay))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.wake:
		case <-idle:
			a.evictIdle()
		case <-gc.C:
			if a.garbageSince.IsZero() {
				continue
			}
			if err := a.write(ctx); err != nil {
				return err
			}
			a.publish()
		}
	}
}

// step flushes what is queued, after the coalescing window, and then does
// what the new state allows: readiness, programs, the orphan sweep.
func (a *Agent) step(ctx context.Context) error {
	if a.queueDepth() > 0 {
		if w := a.opts.FlushWindow; w > 0 {
			t := time.NewTimer(w)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if err := a.flush(ctx); err != nil {
			return err
		}
	}
	if a.becomeReady() {
		a.log.Info("first complete reconcile applied: ready", "services", a.table.Services(),
			"entries", a.table.Applied().Len())
	}
	if err := a.maybeInstall(ctx); err != nil {
		return err
	}
	return a.maybeSweep(ctx)
}

// becomeReady marks the agent ready once every initial service has been
// delivered and applied. It reports whether it just did.
func (a *Agent) becomeReady() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ready || a.nsListed < len(a.opts.Namespaces) {
		return false
	}
	for _, s := range a.services {
		if s.initial && !s.delivered {
			return false
		}
	}
	a.ready = true
	return true
}

// Ready reports whether the first complete reconcile has been applied, and
// if not, why.
func (a *Agent) Ready() (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ready {
		return true, ""
	}
	if !a.running {
		return false, "not running"
	}
	if a.nsListed < len(a.opts.Namespaces) {
		return false, fmt.Sprintf("%d of %d namespaces not listed yet", len(a.opts.Namespaces)-a.nsListed, len(a.opts.Namespaces))
	}
	var waiting []string
	for _, s := range a.services {
		if s.initial && !s.delivered {
			waiting = append(waiting, s.key.String())
		}
	}
	slices.Sort(waiting)
	if len(waiting) > 3 {
		waiting = append(waiting[:3], fmt.Sprintf("and %d more", len(waiting)-3))
	}
	return false, "waiting for services " + strings.Join(waiting, ", ")
}

// maybeInstall calls Options.Install once the agent is ready.
func (a *Agent) maybeInstall(ctx context.Context) error {
	if a.installed || a.opts.Install == nil {
		return nil
	}
	a.mu.Lock()
	ready := a.ready
	a.mu.Unlock()
	if !ready {
		return nil
	}
	a.installed = true
	progs, err := a.opts.Install(ctx)
	if err != nil {
		return fmt.Errorf("nodeagent: install programs: %w", err)
	}
	a.mu.Lock()
	a.programs = progs
	a.mu.Unlock()
	a.log.Info("socket programs installed")
	a.bg.Go(func() { a.consumeMisses(ctx, progs.Misses()) })
	return nil
}

// consumeMisses feeds the programs' miss reports to ReportMiss until the
// channel closes or ctx is done.
func (a *Agent) consumeMisses(ctx context.Context, misses <-chan netip.AddrPort) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-misses:
			if !ok {
				return
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if _, _, err := a.ReportMiss(rctx, m); err != nil && ctx.Err() == nil {
				a.log.Warn("resolving a miss", "addr", m, "err", err)
			}
			cancel()
		}
	}
}

// publish stores the table's figures for Stats, and the orphans' VIPs for
// the startup goroutine until the sweep. Called by the main loop.
func (a *Agent) publish() {
	st := a.table.Applied()
	snap := tableSnapshot{
		frontends: len(st.Frontends), slots: len(st.Slots), backends: len(st.Backends),
		services: a.table.Services(),
	}
	var ips []netip.Addr
	if !a.swept {
		orphans := a.table.Orphans()
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

func (a *Agent) onDemandEnabled() bool { return a.opts.OnDemand && len(a.opts.ServiceCIDRs) > 0 }

func (a *Agent) inServiceCIDRs(ip netip.Addr) bool {
	for _, p := range a.opts.ServiceCIDRs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// kick does a non-blocking send on a capacity-1 signal channel.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
