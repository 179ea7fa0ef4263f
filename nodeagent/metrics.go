package nodeagent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exports an agent's figures at scrape time from its Stats and
// the datapath's per-map stats.
type collector struct {
	a *Agent

	ready, services, held, orphans, queue                      *prometheus.Desc
	events, coalesced, flushes, applies, applyErrors, removals *prometheus.Desc
	entriesWritten, syscalls, throttled                        *prometheus.Desc
	misses, refused, evicted, conflicts                        *prometheus.Desc
	lag, batch                                                 *prometheus.Desc
	watches, lists, gets                                       *prometheus.Desc
	mapEntries, mapMax, mapMemlock, mapOps, mapSyscalls        *prometheus.Desc
	mapBatches, mapReads                                       *prometheus.Desc
}

func newCollector(a *Agent) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("meshrelay_nodeagent_"+name, help, labels, nil)
	}
	return &collector{
		a:              a,
		ready:          d("ready", "1 once the first complete reconcile has been applied."),
		services:       d("services", "Services loaded, by reason (declared, namespace, on_demand).", "reason"),
		held:           d("services_held", "Services with entries in the datapath."),
		orphans:        d("orphan_frontends", "Frontends found in the datapath at start that no loaded service claims (yet)."),
		queue:          d("queue_depth", "Services with a change waiting to be written (bounded by the services loaded)."),
		events:         d("events_total", "Service states and removals taken from the etcd source."),
		coalesced:      d("events_coalesced_total", "Events that replaced a queued change of the same service."),
		flushes:        d("flushes_total", "Flushes of queued changes."),
		applies:        d("applies_total", "Change sets written to the datapath."),
		applyErrors:    d("apply_errors_total", "Change sets that failed (re-read and retried)."),
		removals:       d("removals_total", "Services removed after the source confirmed they are gone."),
		entriesWritten: d("entries_written_total", "Map entries written, by operation.", "op"),
		syscalls:       d("write_syscalls_total", "Map write syscalls."),
		throttled:      d("throttled_seconds_total", "Time spent waiting for the map-write token buckets."),
		misses:         d("misses_total", "Connects to unknown service VIPs reported, by result.", "result"),
		refused:        d("on_demand_refused_total", "On-demand services not loaded because of --max-services."),
		evicted:        d("evictions_total", "On-demand services unloaded, by reason (idle, lru).", "reason"),
		conflicts:      d("frontend_conflicts_total", "Frontends not installed because another service owns the same VIP, port and protocol."),
		lag:            d("propagation_lag_seconds", "Time from the relay's receipt of an upstream push to its application in this node's datapath (changed services)."),
		batch:          d("batch_entries", "Entries per change set written."),
		watches:        d("etcd_watches", "etcd watches open."),
		lists:          d("etcd_lists_total", "Reads of a service's prefix."),
		gets:           d("etcd_vip_gets_total", "Reads of vips/<ip> that reached etcd."),
		mapEntries:     d("map_entries", "Entries in a datapath map.", "map"),
		mapMax:         d("map_max_entries", "Capacity of a datapath map.", "map"),
		mapMemlock:     d("map_memlock_bytes", "Kernel memlock of a datapath map (modelled for the memory datapath).", "map"),
		mapOps:         d("map_ops_total", "Entries written to a datapath map, by operation.", "map", "op"),
		mapSyscalls:    d("map_syscalls_total", "Write syscalls to a datapath map.", "map"),
		mapBatches:     d("map_batch_syscalls_total", "Batched write syscalls to a datapath map.", "map"),
		mapReads:       d("map_read_syscalls_total", "Read syscalls of dumps of a datapath map.", "map"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.services, c.held, c.orphans, c.queue,
		c.events, c.coalesced, c.flushes, c.applies, c.applyErrors, c.removals,
		c.entriesWritten, c.syscalls, c.throttled, c.misses, c.refused, c.evicted, c.conflicts,
		c.lag, c.batch, c.watches, c.lists, c.gets,
		c.mapEntries, c.mapMax, c.mapMemlock, c.mapOps, c.mapSyscalls, c.mapBatches, c.mapReads} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.a.Stats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b := 0.0
	if s.Ready {
		b = 1
	}
	gauge(c.ready, b)
	gauge(c.services, float64(s.Declared), "declared")
	gauge(c.services, float64(s.Namespaced), "namespace")
	gauge(c.services, float64(s.OnDemand), "on_demand")
	gauge(c.held, float64(s.Held))
	gauge(c.orphans, float64(s.Orphans))
	gauge(c.queue, float64(s.QueueDepth))
	counter(c.events, float64(s.Events))
	counter(c.coalesced, float64(s.Coalesced))
	counter(c.flushes, float64(s.Flushes))
	counter(c.applies, float64(s.Applies))
	counter(c.applyErrors, float64(s.ApplyErrors))
	counter(c.removals, float64(s.Removals))
	counter(c.entriesWritten, float64(s.Updates), "update")
	counter(c.entriesWritten, float64(s.Deletes), "delete")
	counter(c.syscalls, float64(s.Syscalls))
	counter(c.throttled, s.Throttled.Seconds())
	counter(c.misses, float64(s.MissesIgnored), "ignored")
	counter(c.misses, float64(s.MissesKnown), "known")
	counter(c.misses, float64(s.MissesUnknown), "unknown")
	counter(c.misses, float64(s.MissesLoaded), "loaded")
	counter(c.misses, float64(s.MissErrors), "error")
	counter(c.refused, float64(s.Refused))
	counter(c.evicted, float64(s.EvictedIdle), "idle")
	counter(c.evicted, float64(s.EvictedLRU), "lru")
	counter(c.conflicts, float64(s.Conflicts))
	for _, h := range []struct {
		d *prometheus.Desc
		h *histogram
	}{{c.lag, &c.a.lag}, {c.batch, &c.a.batch}} {
		buckets, count, sum := h.h.snapshot()
		ch <- prometheus.MustNewConstHistogram(h.d, count, sum, buckets)
	}
	gauge(c.watches, float64(s.Source.WatchesOpen))
	counter(c.lists, float64(s.Source.Lists))
	counter(c.gets, float64(s.Source.Gets))
	for _, m := range c.a.dp.Stats().Maps {
		gauge(c.mapEntries, float64(m.Entries), m.Name)
		gauge(c.mapMax, float64(m.MaxEntries), m.Name)
		gauge(c.mapMemlock, float64(m.MemlockBytes), m.Name)
		counter(c.mapOps, float64(m.Updates), m.Name, "update")
		counter(c.mapOps, float64(m.Deletes), m.Name, "delete")
		counter(c.mapSyscalls, float64(m.Syscalls), m.Name)
		counter(c.mapBatches, float64(m.Batches), m.Name)
		counter(c.mapReads, float64(m.ReadSyscalls), m.Name)
	}
}
