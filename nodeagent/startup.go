package nodeagent

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// Timing of runStartup: how often it looks at what it waits for, how often
// at most it reads etcd itself (only while something waits), and how long
// it waits for the services of dumped frontends it loaded again.
const (
	startupPoll  = 100 * time.Millisecond
	startupRead  = time.Second
	adoptionWait = 30 * time.Second
)

// runStartup settles what the first reconcile cannot know from the watches
// alone, then returns:
//
//   - a declared service that etcd does not have is never delivered by
//     the source. When its watch's list found it absent from a shard
//     synced in the current generation, it counts as delivered (nothing to
//     install). When that list happened before the shard was synced, then
//     once etcd is completely synced (every shard has a synced marker of
//     the current generation) it is checked with one count-only read of
//     its spec key (settleAbsent).
//   - with on-demand loading, the VIPs of the orphan frontends found in the
//     datapath at start are resolved once every declared service was
//     delivered and etcd is completely synced, and the services found are
//     loaded again (on demand). When they have been delivered (or after
//     adoptionWait), the main loop sweeps what is still orphaned.
func (a *Agent) runStartup(ctx context.Context) error {
	tick := time.NewTicker(startupPoll)
	defer tick.Stop()
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
			return true
		}
	}
	// Give the watches a moment before reading anything ourselves.
	lastRead := time.Now().Add(startupPoll*5 - startupRead)
	canRead := func() bool {
		if time.Since(lastRead) < startupRead {
			return false
		}
		lastRead = time.Now()
		return true
	}

	// Every declared service delivered, or absent from a synced etcd.
	for !a.initialDone() {
		// canRead first: the list of waiting services is built at most
		// once per startupRead, not at every poll.
		if canRead() {
			if waiting := a.undeliveredInitial(); len(waiting) > 0 {
				if err := a.settleAbsent(ctx, waiting); err != nil && ctx.Err() == nil {
					a.log.Debug("startup check", "err", err)
				}
			}
		}
		if !wait() {
			return nil
		}
	}

	// The orphans' VIPs resolved against a synced etcd.
	var loaded []keyspace.Service
	for a.onDemandEnabled() {
		orphans := a.pendingOrphanVIPs()
		if len(orphans) == 0 {
			break
		}
		if canRead() {
			var done bool
			var err error
			if loaded, done, err = a.adopt(ctx, orphans); err != nil && ctx.Err() == nil {
				a.log.Debug("resolving the VIPs of dumped frontends", "err", err)
			}
			if done {
				break
			}
		}
		if !wait() {
			return nil
		}
	}

	// The services loaded again delivered.
	deadline := time.Now().Add(adoptionWait)
	for !a.delivered(loaded) {
		if time.Now().After(deadline) {
			a.log.Warn("services of dumped frontends not delivered in time; sweeping without them", "services", len(loaded))
			break
		}
		if !wait() {
			return nil
		}
	}
	a.finishAdoption(len(loaded))
	return nil
}

// settleAbsent marks the services of waiting that a completely synced etcd
// does not have as delivered. A service its watch has not listed yet is
// left to that list (which delivers it, or finds it absent); one whose list
// found it absent from its synced shard is absent without a read; one whose
// watch holds its spec is left to the watch, which delivers it (a read
// could only find the spec too); only the others cost reads (the markers,
// and one count-only read each). So while the watches' first lists are
// under way, and while the states they found wait to be applied - thousands
// of them when a pool of agents starts against a loaded etcd - nothing
// adds to them.
func (a *Agent) settleAbsent(ctx context.Context, waiting []keyspace.Service) error {
	var check []keyspace.Service
	for _, svc := range waiting {
		switch listed, absent := a.src.Listed(svc); {
		case absent:
			a.markAbsent(svc)
		case listed && !a.src.Present(svc):
			check = append(check, svc)
		}
	}
	if len(check) == 0 {
		return nil
	}
	waiting = check
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	complete, why, err := a.src.Complete(ctx)
	if err != nil {
		return err
	}
	if !complete {
		a.log.Debug("etcd not completely synced yet", "why", why)
		return nil
	}
	for _, svc := range waiting {
		has, err := a.src.HasSpec(ctx, svc)
		if err != nil {
			return err
		}
		if !has {
			a.markAbsent(svc)
		}
	}
	return nil
}

// adopt resolves the orphans' VIPs inside the service CIDRs, once etcd is
// completely synced, and loads the services found. done is false when etcd
// is not synced yet or a read failed.
func (a *Agent) adopt(ctx context.Context, orphans []netip.Addr) (loaded []keyspace.Service, done bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	complete, why, err := a.src.Complete(ctx)
	if err != nil || !complete {
		if err == nil {
			a.log.Debug("etcd not completely synced yet", "why", why)
		}
		return nil, false, err
	}
	for _, ip := range orphans {
		if !a.inServiceCIDRs(ip) {
			continue // a frontend of a service no longer declared
		}
		svc, ok, err := a.src.Resolve(ctx, ip)
		if err != nil {
			return nil, false, err
		}
		if ok && !slices.Contains(loaded, svc) && a.loadOnDemand(svc, ip, "dumped frontend") {
			loaded = append(loaded, svc)
		}
	}
	return loaded, true, nil
}

// delivered says whether every service of svcs has been delivered, or is
// no longer loaded.
func (a *Agent) delivered(svcs []keyspace.Service) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.load.delivered(svcs)
}

// undeliveredInitial returns the initial services not delivered yet.
func (a *Agent) undeliveredInitial() []keyspace.Service {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.load.undeliveredInitial()
}

// initialDone says whether every namespace was listed and every initial
// service delivered.
func (a *Agent) initialDone() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.load.initialDone()
}

// pendingOrphanVIPs returns the orphans' VIPs until adoption is done.
func (a *Agent) pendingOrphanVIPs() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.adopted {
		return nil
	}
	return a.orphanIPs
}

// markAbsent records that a declared service is absent from a completely
// synced etcd.
func (a *Agent) markAbsent(svc keyspace.Service) {
	a.mu.Lock()
	if a.load.markAbsent(svc) {
		a.log.Info("declared service is not in etcd", "service", svc)
	}
	a.mu.Unlock()
	kick(a.wake)
}

func (a *Agent) finishAdoption(found int) {
	a.mu.Lock()
	done := a.adopted
	a.adopted = true
	a.mu.Unlock()
	if !done && found > 0 {
		a.log.Info("services of frontends found in the datapath loaded again", "services", found)
	}
	kick(a.wake)
}

// maybeSweep removes the orphans once the agent is ready and runStartup
// is done with them.
func (a *Agent) maybeSweep(ctx context.Context) error {
	if a.swept {
		return nil
	}
	a.mu.Lock()
	settled := a.ready && a.adopted
	a.mu.Unlock()
	if !settled {
		return nil
	}
	a.swept = true
	if n := len(a.w.table.Orphans()); n > 0 {
		a.log.Info("removing frontends of services no longer loaded", "frontends", n)
	}
	a.w.table.SweepOrphans() // also debris: stray slots, unused backends
	if err := a.writeChanges(ctx, nil); err != nil {
		return err
	}
	a.publish()
	return nil
}
