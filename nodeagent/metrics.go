package nodeagent

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshrelay/meshrelay/internal/promvalue"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// metrics are an agent's Prometheus metrics: the only storage of its
// counts. Each agent has its own (many agents share one process in the
// scale harness); Options.Registerer receives them, and Stats reads them.
//
// Those that Counts reads are promvalue types, read without allocating.
type metrics struct {
	events, coalesced, flushes, applyErrors  *promvalue.Counter
	missesLoaded, missesUnknown              *promvalue.Counter
	throttled                                *promvalue.Counter // nanoseconds
	applies, removals                        prometheus.Counter
	updates, deletes, syscalls               prometheus.Counter
	missesIgnored, missesKnown               prometheus.Counter
	missesRefused, missErrors, missesDropped prometheus.Counter
	refused, evictedIdle, evictedLRU         prometheus.Counter
	conflicts, translateProblems, parks      prometheus.Counter
	garbage, parked                          prometheus.Gauge
	lag, batch                               prometheus.Histogram
}

// Bucket upper bounds of the agent's histograms.
var (
	lagBuckets   = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	batchBuckets = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536}
)

func newMetrics() *metrics {
	opts := func(name, help string, labels prometheus.Labels) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "meshrelay", Subsystem: "nodeagent", Name: name, Help: help, ConstLabels: labels}
	}
	c := func(name, help string, labels prometheus.Labels) prometheus.Counter {
		return prometheus.NewCounter(opts(name, help, labels))
	}
	fast := func(name, help string, labels prometheus.Labels) *promvalue.Counter {
		return promvalue.NewCounter(opts(name, help, labels))
	}
	const missName, missHelp = "misses_total", "Connects to unknown service VIPs reported, by result."
	miss := func(result string) prometheus.Counter {
		return c(missName, missHelp, prometheus.Labels{"result": result})
	}
	fastMiss := func(result string) *promvalue.Counter {
		return fast(missName, missHelp, prometheus.Labels{"result": result})
	}
	entries := func(op string) prometheus.Counter {
		return c("entries_written_total", "Map entries written, by operation.", prometheus.Labels{"op": op})
	}
	evicted := func(reason string) prometheus.Counter {
		return c("evictions_total", "On-demand services unloaded, by reason (idle, lru).", prometheus.Labels{"reason": reason})
	}
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "meshrelay", Subsystem: "nodeagent", Name: name, Help: help, Buckets: buckets})
	}
	return &metrics{
		events:            fast("events_total", "Service states and removals taken from the etcd source.", nil),
		coalesced:         fast("events_coalesced_total", "Events that replaced a queued change of the same service.", nil),
		flushes:           fast("flushes_total", "Flushes of queued changes.", nil),
		applies:           c("applies_total", "Change sets written to the datapath.", nil),
		applyErrors:       fast("apply_errors_total", "Change sets that failed (re-read and retried).", nil),
		removals:          c("removals_total", "Services removed after the source confirmed they are gone.", nil),
		updates:           entries("update"),
		deletes:           entries("delete"),
		syscalls:          c("write_syscalls_total", "Map write syscalls.", nil),
		throttled:         promvalue.NewSecondsCounter(opts("throttled_seconds_total", "Time spent waiting for the map-write token buckets.", nil)),
		missesIgnored:     miss("ignored"),
		missesKnown:       miss("known"),
		missesUnknown:     fastMiss("unknown"),
		missesLoaded:      fastMiss("loaded"),
		missesRefused:     miss("refused"),
		missErrors:        miss("error"),
		missesDropped:     miss("dropped"),
		refused:           c("on_demand_refused_total", "On-demand services not loaded because of --max-services.", nil),
		evictedIdle:       evicted("idle"),
		evictedLRU:        evicted("lru"),
		conflicts:         c("frontend_conflicts_total", "Frontends not installed because another service owns the same VIP, port and protocol.", nil),
		translateProblems: c("translate_problems_total", "Service states with parts the datapath cannot express.", nil),
		parks:             c("parks_total", "Services whose change the datapath refused, parked at their last written state and retried with backoff.", nil),
		parked: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "meshrelay", Subsystem: "nodeagent", Name: "parked_services",
			Help: "Services whose change the datapath refuses, kept at their last written state and retried with backoff."}),
		garbage: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "meshrelay", Subsystem: "nodeagent", Name: "garbage_entries",
			Help: "Unreferenced slots and backends left in the datapath for a later change set."}),
		lag:   hist("propagation_lag_seconds", "Time from the relay's receipt of an upstream push to its application in this node's datapath (changed services).", lagBuckets),
		batch: hist("batch_entries", "Entries per change set written.", batchBuckets),
	}
}

// register registers the agent's metrics, the gauges read from a at
// scrape time and the datapath's per-map figures with r.
func (m *metrics) register(r prometheus.Registerer, a *Agent) error {
	gauge := func(name, help string, labels prometheus.Labels, f func(Stats) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "meshrelay", Subsystem: "nodeagent", Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f(a.gauges())) })
	}
	services := func(reason string, f func(Stats) int) prometheus.Collector {
		return gauge("services", "Services loaded, by reason (declared, namespace, on_demand).", prometheus.Labels{"reason": reason}, f)
	}
	cs := []prometheus.Collector{
		m.events, m.coalesced, m.flushes, m.applies, m.applyErrors, m.removals,
		m.updates, m.deletes, m.syscalls, m.throttled,
		m.missesIgnored, m.missesKnown, m.missesUnknown, m.missesLoaded, m.missesRefused, m.missErrors, m.missesDropped,
		m.refused, m.evictedIdle, m.evictedLRU, m.conflicts, m.translateProblems, m.parks, m.parked, m.garbage, m.lag, m.batch,
		gauge("ready", "1 once the first complete reconcile has been applied.", nil, func(s Stats) int {
			if s.Ready {
				return 1
			}
			return 0
		}),
		services("declared", func(s Stats) int { return s.Declared }),
		services("namespace", func(s Stats) int { return s.Namespaced }),
		services("on_demand", func(s Stats) int { return s.OnDemand }),
		gauge("services_held", "Services with entries in the datapath.", nil, func(s Stats) int { return s.Held }),
		gauge("orphan_frontends", "Frontends found in the datapath at start that no loaded service claims (yet).", nil, func(s Stats) int { return s.Orphans }),
		gauge("queue_depth", "Services with a change waiting to be written (bounded by the services loaded).", nil, func(s Stats) int { return s.QueueDepth }),
		newMapCollector(a.dp),
	}
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return a.src.Register(r)
}

// mapCollector exports the datapath's per-map figures (Datapath.Stats,
// the datapath's own storage) at scrape time.
type mapCollector struct {
	dp                                       datapath.Datapath
	entries, max, memlock, ops, sys, batches *prometheus.Desc
	reads, limit, resizes, copies            *prometheus.Desc
}

func newMapCollector(dp datapath.Datapath) *mapCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("meshrelay_nodeagent_"+name, help, labels, nil)
	}
	return &mapCollector{
		dp:      dp,
		entries: d("map_entries", "Entries in a datapath map.", "map"),
		max:     d("map_max_entries", "Capacity of a datapath map.", "map"),
		memlock: d("map_memlock_bytes", "Kernel memlock of a datapath map (modelled for the memory datapath).", "map"),
		ops:     d("map_ops_total", "Entries written to a datapath map, by operation.", "map", "op"),
		sys:     d("map_syscalls_total", "Write syscalls to a datapath map.", "map"),
		batches: d("map_batch_syscalls_total", "Batched write syscalls to a datapath map.", "map"),
		reads:   d("map_read_syscalls_total", "Read syscalls of dumps of a datapath map.", "map"),
		limit:   d("map_limit_entries", "The most entries a datapath map may grow to.", "map"),
		resizes: d("map_resizes_total", "Times a datapath map was replaced by a larger or smaller one.", "map"),
		copies:  d("map_resize_copy_syscalls_total", "Batch syscalls of the copies made by resizes.", "map"),
	}
}

func (c *mapCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.entries, c.max, c.memlock, c.ops, c.sys, c.batches, c.reads, c.limit, c.resizes, c.copies} {
		ch <- d
	}
}

func (c *mapCollector) Collect(ch chan<- prometheus.Metric) {
	metric := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	for _, m := range c.dp.Stats().Maps {
		metric(c.entries, prometheus.GaugeValue, float64(m.Entries), m.Name)
		metric(c.max, prometheus.GaugeValue, float64(m.MaxEntries), m.Name)
		metric(c.memlock, prometheus.GaugeValue, float64(m.MemlockBytes), m.Name)
		metric(c.ops, prometheus.CounterValue, float64(m.Updates), m.Name, "update")
		metric(c.ops, prometheus.CounterValue, float64(m.Deletes), m.Name, "delete")
		metric(c.sys, prometheus.CounterValue, float64(m.Syscalls), m.Name)
		metric(c.batches, prometheus.CounterValue, float64(m.Batches), m.Name)
		metric(c.reads, prometheus.CounterValue, float64(m.ReadSyscalls), m.Name)
		metric(c.limit, prometheus.GaugeValue, float64(m.Limit), m.Name)
		metric(c.resizes, prometheus.CounterValue, float64(m.Resizes), m.Name)
		metric(c.copies, prometheus.CounterValue, float64(m.CopySyscalls), m.Name)
	}
}

// value returns the value of a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if m.Write(&d) != nil {
		return 0
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

func count(m prometheus.Metric) int64 { return int64(value(m)) }

// histogramStats summarises a Prometheus histogram; quantiles are
// interpolated linearly within the bucket holding them (the +Inf bucket
// answers its lower bound).
func histogramStats(h prometheus.Histogram) HistogramStats {
	var d dto.Metric
	if h.Write(&d) != nil {
		return HistogramStats{}
	}
	ph := d.GetHistogram()
	st := HistogramStats{Count: ph.GetSampleCount(), Sum: ph.GetSampleSum()}
	quantile := func(q float64) float64 {
		if st.Count == 0 {
			return 0
		}
		rank := q * float64(st.Count)
		lower, below := 0.0, uint64(0)
		for _, b := range ph.GetBucket() {
			upper, cum := b.GetUpperBound(), b.GetCumulativeCount()
			if float64(cum) >= rank && cum > below {
				if math.IsInf(upper, 1) {
					return lower
				}
				return lower + (upper-lower)*(rank-float64(below))/float64(cum-below)
			}
			lower, below = upper, cum
		}
		return lower
	}
	st.P50, st.P99 = quantile(0.5), quantile(0.99)
	return st
}
