package sotw

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrelay/meshrelay/internal/promvalue"
)

// Stats is a snapshot of the client's metrics, for callers and tests; the
// metrics themselves live only in the Prometheus collectors (see metrics).
// Counters only grow over the client's life.
type Stats struct {
	StreamsOpened uint64 // streams successfully opened
	Responses     uint64 // responses received (accepted or not)
	ACKs          uint64 // responses accepted and ACKed
	NACKs         uint64 // responses rejected and NACKed
	Updates       uint64 // Updates given to the Handler
	// BytesReceived sums the serialized size of every resource received.
	BytesReceived uint64
	// Resources is the number of resources held, by type URL.
	Resources map[string]int
	// Subscribed is the number of names subscribed, by type URL (EDS, RDS).
	Subscribed map[string]int
	// Connected reports that a stream is open (see Client.Connected).
	Connected bool
	// Complete reports that the current stream's state is complete.
	Complete bool
	// LastError is the error that ended the latest stream, or the reason of
	// the latest NACK, whichever came last; LastErrorAt is when.
	LastError   error
	LastErrorAt time.Time
}

// metrics are the client's Prometheus collectors, one set per Client: the
// only storage of its counters and sizes. connected and complete are state
// the client acts on, exported through gauge functions.
type metrics struct {
	streamsOpened, responses, acks, nacks, updates, bytes prometheus.Counter
	resources, subscribed                                 *prometheus.GaugeVec // by message name
	connectedGauge, completeGauge                         prometheus.GaugeFunc

	connected atomic.Bool
	complete  atomic.Bool

	mu          sync.Mutex // guards the latest error, which is not a metric
	lastErr     error
	lastErrorAt time.Time
}

func newMetrics() *metrics {
	m := &metrics{}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "meshrelay", Subsystem: "relay_xds", Name: name, Help: help})
	}
	g := func(name, help string, b *atomic.Bool) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "meshrelay", Subsystem: "relay_xds", Name: name, Help: help},
			func() float64 {
				if b.Load() {
					return 1
				}
				return 0
			})
	}
	vec := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "meshrelay", Subsystem: "relay_xds", Name: name, Help: help}, []string{"type"})
	}
	m.streamsOpened = c("streams_total", "Upstream ADS streams opened.")
	m.responses = c("responses_total", "Upstream xDS responses received.")
	m.acks = c("acks_total", "Upstream xDS responses accepted.")
	m.nacks = c("nacks_total", "Upstream xDS responses rejected (NACKed); the last good state is kept.")
	m.updates = c("updates_total", "Changes handed from the xDS client to translation.")
	m.bytes = c("received_bytes_total", "Serialized bytes of xDS resources received.")
	m.resources = vec("resources", "xDS resources held, by type.")
	m.subscribed = vec("subscribed_names", "Names subscribed for the named types (EDS, RDS).")
	m.connectedGauge = g("connected", "1 while an upstream stream is open.", &m.connected)
	m.completeGauge = g("complete", "1 while the current stream's state is complete.", &m.complete)
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.streamsOpened, m.responses, m.acks, m.nacks, m.updates, m.bytes,
		m.resources, m.subscribed, m.connectedGauge, m.completeGauge}
}

func (m *metrics) setError(err error, at time.Time) {
	m.mu.Lock()
	m.lastErr, m.lastErrorAt = err, at
	m.mu.Unlock()
}

// setSizes replaces the per-type sizes, keyed by type URL.
func (m *metrics) setSizes(resources, subscribed map[string]int) {
	for vec, sizes := range map[*prometheus.GaugeVec]map[string]int{m.resources: resources, m.subscribed: subscribed} {
		vec.Reset()
		for url, n := range sizes {
			vec.WithLabelValues(messageName(url)).Set(float64(n))
		}
	}
}

func (m *metrics) snapshot() Stats {
	n := func(c prometheus.Counter) uint64 { return uint64(promvalue.Of(c)) }
	s := Stats{
		StreamsOpened: n(m.streamsOpened),
		Responses:     n(m.responses),
		ACKs:          n(m.acks),
		NACKs:         n(m.nacks),
		Updates:       n(m.updates),
		BytesReceived: n(m.bytes),
		Resources:     byURL(m.resources),
		Subscribed:    byURL(m.subscribed),
		Connected:     m.connected.Load(),
		Complete:      m.complete.Load(),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s.LastError, s.LastErrorAt = m.lastErr, m.lastErrorAt
	return s
}

// byURL reads a per-type gauge vector back into a map by type URL.
func byURL(vec *prometheus.GaugeVec) map[string]int {
	out := map[string]int{}
	for name, v := range promvalue.ByLabel(vec) {
		for _, t := range resourceTypes {
			if messageName(t.url) == name {
				out[t.url] = int(v)
			}
		}
	}
	return out
}

// messageName turns a type URL into its message name ("Cluster"), the
// "type" label of the size metrics.
func messageName(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}

// Metrics returns the client's Prometheus collectors
// (meshrelay_relay_xds_*), for the caller to register.
func (c *Client) Metrics() []prometheus.Collector {
	return append(c.stats.collectors(), c.health.gauge)
}
