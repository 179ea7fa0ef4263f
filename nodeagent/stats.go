package nodeagent

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
)

// Stats are an agent's figures since New, for metrics, tests and the
// scale harness.
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
	// service has the VIP), loaded, errors (etcd failed).
	Misses, MissesIgnored, MissesKnown, MissesUnknown, MissesLoaded, MissErrors int64
	// Refused counts on-demand services not loaded for --max-services;
	// EvictedLRU those unloaded to make room; EvictedIdle those unloaded
	// after --idle-timeout.
	Refused, EvictedLRU, EvictedIdle int64
	// Conflicts counts frontends not installed because another service
	// owns the same VIP, port and protocol. TranslateProblems counts
	// service states with parts the datapath cannot express.
	Conflicts, TranslateProblems int64

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
	Count         uint64
	Sum           float64
	P50, P99, Max float64
}

// Stats returns a snapshot of the agent's figures.
func (a *Agent) Stats() Stats {
	st := Stats{
		Events:            a.stats.events.Load(),
		Coalesced:         a.stats.coalesced.Load(),
		Flushes:           a.stats.flushes.Load(),
		Applies:           a.stats.applies.Load(),
		ApplyErrors:       a.stats.applyErrors.Load(),
		Updates:           a.stats.updates.Load(),
		Deletes:           a.stats.deletes.Load(),
		Syscalls:          a.stats.syscalls.Load(),
		Throttled:         time.Duration(a.stats.throttledNanos.Load()),
		Garbage:           int(a.stats.garbage.Load()),
		Removals:          a.stats.removals.Load(),
		Misses:            a.stats.misses.Load(),
		MissesIgnored:     a.stats.missesIgnored.Load(),
		MissesKnown:       a.stats.missesKnown.Load(),
		MissesUnknown:     a.stats.missesUnknown.Load(),
		MissesLoaded:      a.stats.missesLoaded.Load(),
		MissErrors:        a.stats.missErrors.Load(),
		Refused:           a.stats.refused.Load(),
		EvictedLRU:        a.stats.evictedLRU.Load(),
		EvictedIdle:       a.stats.evictedIdle.Load(),
		Conflicts:         a.stats.conflicts.Load(),
		TranslateProblems: a.stats.translateProblems.Load(),
		Lag:               a.lag.stats(),
		BatchEntries:      a.batch.stats(),
		Source:            a.src.Stats(),
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st.Ready = a.ready
	st.QueueDepth = len(a.pending)
	for _, s := range a.services {
		if !s.watched {
			continue
		}
		st.Services++
		if s.declared {
			st.Declared++
		}
		if s.namespace {
			st.Namespaced++
		}
		if s.onDemand {
			st.OnDemand++
		}
	}
	st.Held, st.Orphans = a.snapshot.services, a.snapshot.orphans
	st.Frontends, st.Slots, st.Backends = a.snapshot.frontends, a.snapshot.slots, a.snapshot.backends
	return st
}

// DatapathStats returns the datapath's per-map figures.
func (a *Agent) DatapathStats() datapath.Stats { return a.dp.Stats() }

// counters are the atomic counters behind Stats.
type counters struct {
	events, coalesced, flushes, applies, applyErrors     atomic.Int64
	updates, deletes, syscalls, throttledNanos, removals atomic.Int64
	garbage                                              atomic.Int64
	misses, missesIgnored, missesKnown, missesUnknown    atomic.Int64
	missesLoaded, missErrors                             atomic.Int64
	refused, evictedLRU, evictedIdle                     atomic.Int64
	conflicts, translateProblems                         atomic.Int64
}

// Bucket upper bounds of the agent's histograms.
var (
	lagBuckets   = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	batchBuckets = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536}
)

// histogram is a fixed-bucket histogram, cheap enough to keep per agent
// when hundreds run in one process; the collector exports it as a
// Prometheus histogram.
type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []uint64 // per bucket (not cumulative); the last is +Inf
	count  uint64
	sum    float64
	max    float64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i]++
	h.count++
	h.sum += v
	h.max = max(h.max, v)
}

// snapshot returns the cumulative counts per upper bound, count and sum.
func (h *histogram) snapshot() (map[float64]uint64, uint64, float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cum := make(map[float64]uint64, len(h.bounds))
	var c uint64
	for i, b := range h.bounds {
		c += h.counts[i]
		cum[b] = c
	}
	return cum, h.count, h.sum
}

func (h *histogram) stats() HistogramStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HistogramStats{Count: h.count, Sum: h.sum, P50: h.quantile(0.5), P99: h.quantile(0.99), Max: h.max}
}

// quantile interpolates linearly within the bucket holding the q-th
// observation, capped by the largest observation. Caller holds h.mu.
func (h *histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return 0
	}
	rank := q * float64(h.count)
	var c float64
	lower := 0.0
	for i, n := range h.counts {
		upper := math.Inf(1)
		if i < len(h.bounds) {
			upper = h.bounds[i]
		}
		if n > 0 && c+float64(n) >= rank {
			if math.IsInf(upper, 1) {
				return h.max
			}
			return min(lower+(upper-lower)*(rank-c)/float64(n), h.max)
		}
		c += float64(n)
		lower = upper
	}
	return h.max
}
