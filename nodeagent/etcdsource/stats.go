package etcdsource

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshrelay/meshrelay/internal/promvalue"
)

// Stats are the Source's counters since New, for tests and the scale
// harness; they are read from the Source's Prometheus metrics (Register).
type Stats struct {
	// Services is the number of services registered with Watch.
	Services int
	// Deferred is the number of watched services whose removal waits for
	// a synced marker of the current generation.
	Deferred int
	// WatchesOpen is the number of etcd watches open: one per watched
	// service plus two (generation and synced/), all on one gRPC stream.
	WatchesOpen int64
	// Lists counts reads of a service's prefix (one read-only Txn each);
	// Relists counts those after a service's first (compaction, marker,
	// generation change, removal check).
	Lists, Relists int64
	// Gets counts reads of vips/<ip> that reached etcd; NegativeHits counts
	// Resolve calls answered by the cache of unknown VIPs.
	Gets, NegativeHits int64
	// Probes counts reads of generation made to detect a rebuilt etcd.
	Probes int64
	// Reconnects counts the client's connection becoming ready again after
	// it was lost; each asks for a probe at once (ProbeInterval's ticks
	// are only a backstop).
	Reconnects int64
	// WatchEvents counts etcd events applied from service watches.
	WatchEvents int64
	// Events counts events queued for the consumer; Coalesced counts those
	// that replaced a pending event of the same service; Delivered counts
	// those returned by Next.
	Events, Coalesced, Delivered int64
	// Compactions counts service watches that failed with ErrCompacted.
	Compactions int64
	// DeferredDeletes counts removals deferred for lack of a synced marker.
	DeferredDeletes int64
	// GenerationChanges counts changed generations and rebuilt etcds seen.
	GenerationChanges int64
	// Invalid counts refused values under services/, by reason (the
	// Reason constants); each value is counted once.
	Invalid map[string]int64
}

// counters are the Source's metrics: the only storage of its counts.
//
// Those that Counts reads are promvalue types, read without allocating.
type counters struct {
	watchesOpen                             *promvalue.Gauge
	lists, relists, gets, watchEvents       *promvalue.Counter
	generationChanges                       *promvalue.Counter
	negativeHits, probes, events, coalesced prometheus.Counter
	delivered, compactions, deferredDeletes prometheus.Counter
	reconnects                              prometheus.Counter
	invalid                                 *prometheus.CounterVec
}

func newCounters() counters {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "meshrelay", Subsystem: "nodeagent", Name: name, Help: help}
	}
	c := func(name, help string) prometheus.Counter { return prometheus.NewCounter(opts(name, help)) }
	fast := func(name, help string) *promvalue.Counter { return promvalue.NewCounter(opts(name, help)) }
	return counters{
		watchesOpen: promvalue.NewGauge(prometheus.GaugeOpts{Namespace: "meshrelay", Subsystem: "nodeagent",
			Name: "etcd_watches", Help: "etcd watches open."}),
		lists:             fast("etcd_lists_total", "Reads of a service's prefix."),
		relists:           fast("etcd_relists_total", "Reads of a service's prefix after its first (compaction, marker, generation change, removal check)."),
		gets:              fast("etcd_vip_gets_total", "Reads of vips/<ip> that reached etcd."),
		negativeHits:      c("etcd_vip_negative_hits_total", "VIP resolutions answered by the cache of unknown VIPs."),
		probes:            c("etcd_generation_probes_total", "Reads of generation made to detect a rebuilt etcd."),
		watchEvents:       fast("etcd_watch_events_total", "etcd events applied from service watches."),
		events:            c("source_events_total", "Service states and removals queued by the etcd source."),
		coalesced:         c("source_events_coalesced_total", "Source events that replaced a pending event of the same service."),
		delivered:         c("source_events_delivered_total", "Source events taken by the agent."),
		compactions:       c("etcd_compactions_total", "Service watches that failed with ErrCompacted."),
		deferredDeletes:   c("etcd_deferred_removals_total", "Removals deferred for lack of a synced marker of the current generation."),
		generationChanges: fast("etcd_generation_changes_total", "Changed generations and rebuilt etcds seen."),
		reconnects:        c("etcd_reconnects_total", "Times the etcd connection became ready again after it was lost (each asks for a generation probe)."),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "meshrelay", Subsystem: "nodeagent",
			Name: "invalid_values_total", Help: "Values under services/ refused (their service keeps its last good state), by reason."}, []string{"reason"}),
	}
}

// Register registers the Source's metrics with r.
func (s *Source) Register(r prometheus.Registerer) error {
	c := &s.stats
	for _, m := range []prometheus.Collector{c.watchesOpen, c.lists, c.relists, c.gets, c.negativeHits, c.probes,
		c.watchEvents, c.events, c.coalesced, c.delivered, c.compactions, c.deferredDeletes, c.generationChanges, c.reconnects, c.invalid} {
		if err := r.Register(m); err != nil {
			return err
		}
	}
	return nil
}

// Stats returns a snapshot of the Source's counters.
func (s *Source) Stats() Stats {
	c := &s.stats
	st := Stats{
		WatchesOpen:       read(c.watchesOpen),
		Lists:             read(c.lists),
		Relists:           read(c.relists),
		Gets:              read(c.gets),
		NegativeHits:      read(c.negativeHits),
		Probes:            read(c.probes),
		WatchEvents:       read(c.watchEvents),
		Events:            read(c.events),
		Coalesced:         read(c.coalesced),
		Delivered:         read(c.delivered),
		Compactions:       read(c.compactions),
		DeferredDeletes:   read(c.deferredDeletes),
		GenerationChanges: read(c.generationChanges),
		Reconnects:        read(c.reconnects),
	}
	st.Invalid = map[string]int64{}
	for _, r := range invalidReasons {
		if n := read(c.invalid.WithLabelValues(r)); n > 0 {
			st.Invalid[r] = n
		}
	}
	s.mu.Lock()
	st.Services = len(s.watches)
	for _, w := range s.watches {
		if w.deferred {
			st.Deferred++
		}
	}
	s.mu.Unlock()
	return st
}

// Counts are the figures of Stats that a poller of many sources sums, read
// without the per-reason invalid counts and the walk over the watches.
type Counts struct {
	// Services counts the services watched.
	Services int
	// As in Stats.
	WatchesOpen, Lists, Relists, Gets, WatchEvents, GenerationChanges int64
}

// Counts returns a snapshot of the source's Counts.
func (s *Source) Counts() Counts {
	c := &s.stats
	out := Counts{
		WatchesOpen: c.watchesOpen.Load(), Lists: c.lists.Load(), Relists: c.relists.Load(),
		Gets: c.gets.Load(), WatchEvents: c.watchEvents.Load(), GenerationChanges: c.generationChanges.Load(),
	}
	s.mu.Lock()
	out.Services = len(s.watches)
	s.mu.Unlock()
	return out
}

// read returns the value of a counter or gauge.
func read(m prometheus.Metric) int64 {
	var d dto.Metric
	if m.Write(&d) != nil {
		return 0
	}
	if c := d.GetCounter(); c != nil {
		return int64(c.GetValue())
	}
	return int64(d.GetGauge().GetValue())
}
