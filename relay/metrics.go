package relay

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exports the relay's counters at scrape time from the stages'
// Stats snapshots, so the stages need no Prometheus dependency.
type collector struct {
	r *Relay

	streams, responses, acks, nacks, updates, bytes *prometheus.Desc
	resources, subscribed, connected, complete      *prometheus.Desc
	services, syncs                                 *prometheus.Desc
	sinkDescs                                       sinkDescs
}

func newCollector(r *Relay) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("meshrelay_relay_"+name, help, labels, nil)
	}
	return &collector{
		r:          r,
		streams:    d("xds_streams_total", "Upstream ADS streams opened."),
		responses:  d("xds_responses_total", "Upstream xDS responses received."),
		acks:       d("xds_acks_total", "Upstream xDS responses accepted."),
		nacks:      d("xds_nacks_total", "Upstream xDS responses rejected (NACKed); the last good state is kept."),
		updates:    d("xds_updates_total", "Changes handed from the xDS client to translation."),
		bytes:      d("xds_received_bytes_total", "Serialized bytes of xDS resources received."),
		resources:  d("xds_resources", "xDS resources held, by type.", "type"),
		subscribed: d("xds_subscribed_names", "Names subscribed for the named types (EDS, RDS).", "type"),
		connected:  d("xds_connected", "1 while an upstream stream is open."),
		complete:   d("xds_complete", "1 while the current stream's state is complete."),
		services:   d("services", "Services present upstream at the last complete sync."),
		syncs:      d("complete_syncs_total", "Complete upstream syncs (at most one per stream)."),
		sinkDescs:  newSinkDescs(),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.streams, c.responses, c.acks, c.nacks, c.updates, c.bytes,
		c.resources, c.subscribed, c.connected, c.complete, c.services, c.syncs} {
		ch <- d
	}
	c.sinkDescs.describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.client.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(c.streams, s.StreamsOpened)
	counter(c.responses, s.Responses)
	counter(c.acks, s.ACKs)
	counter(c.nacks, s.NACKs)
	counter(c.updates, s.Updates)
	counter(c.bytes, s.BytesReceived)
	for t, n := range s.Resources {
		gauge(c.resources, float64(n), shortType(t))
	}
	for t, n := range s.Subscribed {
		gauge(c.subscribed, float64(n), shortType(t))
	}
	gauge(c.connected, b2f(s.Connected))
	gauge(c.complete, b2f(s.Complete))
	c.r.mu.Lock()
	services, syncs := c.r.services, c.r.completes
	c.r.mu.Unlock()
	gauge(c.services, float64(services))
	counter(c.syncs, uint64(syncs))
	c.sinkDescs.collect(ch, c.r.sink.Stats())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// shortType turns a type URL into its message name ("Cluster").
func shortType(typeURL string) string {
	for i := len(typeURL) - 1; i >= 0; i-- {
		if typeURL[i] == '.' {
			return typeURL[i+1:]
		}
	}
	return typeURL
}
