package nodeagent

import (
	"time"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
)

// Stats are an agent's figures since New, for tests and the scale
// harness, read from its Prometheus metrics (see Options.Registerer).
type Stats struct {
	Ready bool
	// Services counts the services loaded (watched), by reason; a service
	// can have several reasons. Held counts those with entries in the
	// datapath; Orphans the frontends found at start that no service
	// claimed yet (zero after the sweep).
	Services, Declared, Namespaced, OnDemand int
	Held, Orphans                            int
	// Entries in the datapath as the agent knows them.
	Frontends, Slots, Backends int

	// QueueDepth is the number of services with a change waiting; it is
	// bounded by the number of services loaded.
	QueueDepth int
	// Garbage is the number of unreferenced slots and backends left in the
	// datapath for a later change set (deleted within about a second).
	Garbage int
	// Events counts states and removals taken from the source; Coalesced
	// those that replaced a queued change of the same service.
	Events, Coalesced int64
	// Flushes counts flushes; Applies the change sets written (one or more
	// per flush, none for a flush that changes nothing); ApplyErrors the
	// failed ones (retried).
	Flushes, Applies, ApplyErrors int64
	// Updates, Deletes and Syscalls sum datapath.ApplyStats.
	Updates, Deletes, Syscalls int64
	// Throttled is the time spent waiting for the token buckets.
	Throttled time.Duration
	// Removals counts services removed on a removal from the source.
	Removals int64
	// Misses counts ReportMiss calls: ignored (on-demand off or outside
	// the service CIDRs), known (a VIP of a loaded service), unknown (no
	// service has the VIP), loaded, refused (--max-services), errors
	// (etcd failed), dropped (the miss queue was full, or the etcd read
	// budget could not serve it in time).
	Misses, MissesIgnored, MissesKnown, MissesUnknown, MissesLoaded, MissesRefused, MissErrors int64
	MissesDropped                                                                              int64
	// Refused counts on-demand services not loaded for --max-services;
	// EvictedLRU those unloaded to make room; EvictedIdle those unloaded
	// after --idle-timeout.
	Refused, EvictedLRU, EvictedIdle int64
	// Conflicts counts frontends not installed because another service
	// owns the same VIP, port and protocol. TranslateProblems counts
	// service states with parts the datapath cannot express.
	Conflicts, TranslateProblems int64
	// Parked is the number of services whose change the datapath refuses
	// (kept at their last written state, retried); Parks counts parkings.
	Parked int
	Parks  int64

	// Lag is the propagation lag (now − observed_unix_nano of the newest
	// value applied) of changed services, in seconds.
	Lag HistogramStats
	// BatchEntries is the number of entries per change set written.
	BatchEntries HistogramStats

	// Source are the etcd source's counters.
	Source etcdsource.Stats
}

// HistogramStats summarises a histogram; quantiles are interpolated
// within buckets.
type HistogramStats struct {
	Count    uint64
	Sum      float64
	P50, P99 float64
}

// Stats returns a snapshot of the agent's figures.
func (a *Agent) Stats() Stats {
	m := a.m
	st := a.gauges()
	st.Garbage = int(count(m.garbage))
	st.Events, st.Coalesced = count(m.events), count(m.coalesced)
	st.Flushes, st.Applies, st.ApplyErrors = count(m.flushes), count(m.applies), count(m.applyErrors)
	st.Updates, st.Deletes, st.Syscalls = count(m.updates), count(m.deletes), count(m.syscalls)
	st.Throttled = time.Duration(m.throttled.Load())
	st.Removals = count(m.removals)
	st.MissesIgnored, st.MissesKnown, st.MissesUnknown = count(m.missesIgnored), count(m.missesKnown), count(m.missesUnknown)
	st.MissesLoaded, st.MissesRefused, st.MissErrors = count(m.missesLoaded), count(m.missesRefused), count(m.missErrors)
	st.MissesDropped = count(m.missesDropped)
	st.Misses = st.MissesIgnored + st.MissesKnown + st.MissesUnknown + st.MissesLoaded + st.MissesRefused + st.MissErrors + st.MissesDropped
	st.Refused, st.EvictedLRU, st.EvictedIdle = count(m.refused), count(m.evictedLRU), count(m.evictedIdle)
	st.Conflicts, st.TranslateProblems = count(m.conflicts), count(m.translateProblems)
	st.Parked, st.Parks = int(count(m.parked)), count(m.parks)
	st.Lag, st.BatchEntries = histogramStats(m.lag), histogramStats(m.batch)
	st.Source = a.src.Stats()
	return st
}

// gauges returns the figures of Stats read from the agent's state.
func (a *Agent) gauges() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.load.counts()
	return Stats{
		Ready:      a.ready,
		QueueDepth: a.queuedLocked(),
		Services:   c.services, Declared: c.declared, Namespaced: c.namespaced, OnDemand: c.onDemand,
		Held: a.snapshot.services, Orphans: a.snapshot.orphans,
		Frontends: a.snapshot.frontends, Slots: a.snapshot.slots, Backends: a.snapshot.backends,
	}
}

// DatapathStats returns the datapath's per-map figures.
func (a *Agent) DatapathStats() datapath.Stats { return a.dp.Stats() }

// Counts are the figures of Stats that a poller of many agents sums (the
// scale harness polls a thousand agents every second): a dozen metric
// reads, where Stats makes about fifty and walks the load set.
type Counts struct {
	Ready bool
	// Services counts the services watched; QueueDepth those with a
	// change waiting.
	Services, QueueDepth int
	// As in Stats.
	Events, Coalesced, Flushes, ApplyErrors int64
	MissesLoaded, MissesUnknown             int64
	Throttled                               time.Duration
	Source                                  etcdsource.Counts
}

// Counts returns a snapshot of the agent's Counts.
func (a *Agent) Counts() Counts {
	m := a.m
	a.mu.Lock()
	c := Counts{Ready: a.ready, QueueDepth: a.queuedLocked()}
	a.mu.Unlock()
	c.Events, c.Coalesced = m.events.Load(), m.coalesced.Load()
	c.Flushes, c.ApplyErrors = m.flushes.Load(), m.applyErrors.Load()
	c.MissesLoaded, c.MissesUnknown = m.missesLoaded.Load(), m.missesUnknown.Load()
	c.Throttled = time.Duration(m.throttled.Load())
	c.Source = a.src.Counts()
	c.Services = c.Source.Services
	return c
}
