package reconnect

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrelay/meshrelay/internal/promvalue"
)

// Stats is a snapshot of an upstream client's metrics, for callers and
// tests; the metrics themselves live only in the Prometheus collectors (see
// Metrics). Counters only grow over the client's life.
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
	// Subscribed is the number of names subscribed, by type URL, for the
	// types subscribed by name (sotw's EDS and RDS); empty for the others.
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

// Metrics are an upstream client's Prometheus collectors
// (meshrelay_relay_xds_*), one set per client: the only storage of its
// counters and sizes. Connected and Complete are state the client acts on,
// exported through gauge functions.
type Metrics struct {
	StreamsOpened, Responses, ACKs, NACKs, Updates, Bytes prometheus.Counter

	Connected atomic.Bool
	Complete  atomic.Bool

	resources, subscribed         *prometheus.GaugeVec // by message name
	connectedGauge, completeGauge prometheus.GaugeFunc
	typeURLs                      []string // of the client's types, to read the sizes back

	mu          sync.Mutex // guards the latest error, which is not a metric
	lastErr     error
	lastErrorAt time.Time
}

// NewMetrics returns the metrics of a client of the types typeURLs.
func NewMetrics(typeURLs []string) *Metrics {
	m := &Metrics{typeURLs: typeURLs}
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
	m.StreamsOpened = c("streams_total", "Upstream ADS streams opened.")
	m.Responses = c("responses_total", "Upstream xDS responses received.")
	m.ACKs = c("acks_total", "Upstream xDS responses accepted.")
	m.NACKs = c("nacks_total", "Upstream xDS responses rejected (NACKed); the last good state is kept.")
	m.Updates = c("updates_total", "Changes handed from the xDS client to translation.")
	m.Bytes = c("received_bytes_total", "Serialized bytes of xDS resources received.")
	m.resources = vec("resources", "xDS resources held, by type.")
	m.subscribed = vec("subscribed_names", "Names subscribed for the named types (EDS, RDS).")
	m.connectedGauge = g("connected", "1 while an upstream stream is open.", &m.Connected)
	m.completeGauge = g("complete", "1 while the current stream's state is complete.", &m.Complete)
	return m
}

// Collectors returns the collectors, for the caller to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.StreamsOpened, m.Responses, m.ACKs, m.NACKs, m.Updates, m.Bytes,
		m.resources, m.subscribed, m.connectedGauge, m.completeGauge}
}

// Received counts a response whose resources are size serialized bytes.
func (m *Metrics) Received(size int) {
	m.Responses.Inc()
	m.Bytes.Add(float64(size))
}

// SetError records the latest error (a stream's end or a NACK's reason).
func (m *Metrics) SetError(err error, at time.Time) {
	m.mu.Lock()
	m.lastErr, m.lastErrorAt = err, at
	m.mu.Unlock()
}

// SetSizes replaces the per-type sizes, keyed by type URL; subscribed may be
// nil.
func (m *Metrics) SetSizes(resources, subscribed map[string]int) {
	for vec, sizes := range map[*prometheus.GaugeVec]map[string]int{m.resources: resources, m.subscribed: subscribed} {
		vec.Reset()
		for url, n := range sizes {
			vec.WithLabelValues(MessageName(url)).Set(float64(n))
		}
	}
}

// StreamOpened counts a stream that was opened and marks the client
// connected and not complete; the returned function marks it disconnected
// (and not complete) when the stream ends.
func (m *Metrics) StreamOpened() (ended func()) {
	m.StreamsOpened.Inc()
	m.Complete.Store(false)
	m.Connected.Store(true)
	return func() {
		m.Connected.Store(false)
		m.Complete.Store(false)
	}
}

// Snapshot returns the current values.
func (m *Metrics) Snapshot() Stats {
	n := func(c prometheus.Counter) uint64 { return uint64(promvalue.Of(c)) }
	s := Stats{
		StreamsOpened: n(m.StreamsOpened),
		Responses:     n(m.Responses),
		ACKs:          n(m.ACKs),
		NACKs:         n(m.NACKs),
		Updates:       n(m.Updates),
		BytesReceived: n(m.Bytes),
		Resources:     m.byURL(m.resources),
		Subscribed:    m.byURL(m.subscribed),
		Connected:     m.Connected.Load(),
		Complete:      m.Complete.Load(),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s.LastError, s.LastErrorAt = m.lastErr, m.lastErrorAt
	return s
}

// byURL reads a per-type gauge vector back into a map by type URL.
func (m *Metrics) byURL(vec *prometheus.GaugeVec) map[string]int {
	out := map[string]int{}
	for name, v := range promvalue.ByLabel(vec) {
		for _, url := range m.typeURLs {
			if MessageName(url) == name {
				out[url] = int(v)
			}
		}
	}
	return out
}

// MessageName turns a type URL into its message name ("Cluster"), the
// "type" label of the size metrics.
func MessageName(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}
