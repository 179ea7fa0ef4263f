package etcdsink

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrelay/meshrelay/internal/promvalue"
)

// Stats is a snapshot of the Sink's metrics since New, for callers and
// tests; the metrics themselves live only in the Prometheus collectors
// (see metrics).
type Stats struct {
	Txns    uint64 // committed transactions
	Puts    uint64 // keys put (values, VIP index entries, synced markers)
	Deletes uint64 // delete operations (a deleted service's prefix counts once)
	Bytes   uint64 // keys and values sent in committed transactions

	// Skipped counts services processed with nothing to write: an identical
	// re-push, or the delete of a service etcd never held.
	Skipped uint64
	// Retries counts failed transactions whose services were re-queued.
	Retries uint64
	// Oversized counts services that cannot be written in one transaction
	// (more than MaxTxnOps operations, or larger than etcd's request limit).
	Oversized uint64
	// FenceFailures counts transactions refused by Options.Fence.
	FenceFailures uint64
	// GenerationChanges counts reloads after etcd's generation vanished or
	// changed.
	GenerationChanges uint64

	// Holds counts the times the mass-deletion guard started holding.
	Holds uint64
	// HeldDeletions is the number of services whose removal the
	// mass-deletion guard holds.
	HeldDeletions int
	// Authorizations is the number of authorization policy keys in etcd,
	// as far as the Sink knows; HeldAuthorizationDeletions those whose
	// removal the mass-deletion guard holds.
	Authorizations             int
	HeldAuthorizationDeletions int
	// QueueDepth is the number of dirty services (and pending marker
	// writes) waiting for the writer.
	QueueDepth int
	// Throttled is the time spent waiting for the token bucket.
	Throttled time.Duration
	// Generation is the etcd generation id the Sink writes under.
	Generation string
	// LastError is the latest write error, empty when none happened yet.
	LastError     string
	LastErrorTime time.Time
}

// metrics are the Sink's Prometheus collectors, one set per Sink: the only
// storage of its counters.
type metrics struct {
	txns, puts, deletes, bytes prometheus.Counter
	skipped, retries           prometheus.Counter
	oversized, fenceFailures   prometheus.Counter
	generationChanges          prometheus.Counter
	holds                      prometheus.Counter
	throttled                  prometheus.Counter // seconds
	txnSeconds                 prometheus.Histogram
	queueDepth                 prometheus.GaugeFunc
	heldDeletions              prometheus.GaugeFunc

	mu            sync.Mutex // guards the latest error, which is not a metric
	lastError     string
	lastErrorTime time.Time
}

func newMetrics(queueLen, held func() int) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "meshrelay", Subsystem: "relay_etcd", Name: name, Help: help})
	}
	return &metrics{
		txns:              c("txns_total", "etcd transactions committed."),
		puts:              c("puts_total", "etcd keys put (values, VIP index entries, synced markers)."),
		deletes:           c("deletes_total", "etcd delete operations."),
		bytes:             c("written_bytes_total", "Bytes of keys and values in committed transactions."),
		skipped:           c("skipped_unchanged_total", "Services processed with nothing to write (identical content)."),
		retries:           c("retries_total", "Failed transactions retried with backoff."),
		oversized:         c("oversized_services_total", "Services too large for one transaction (not written)."),
		fenceFailures:     c("fence_failures_total", "Transactions refused by the shard fence."),
		generationChanges: c("generation_changes_total", "Reloads after etcd's generation vanished or changed."),
		holds:             c("deletion_holds_total", "Times the mass-deletion guard started holding removals."),
		throttled:         c("throttled_seconds_total", "Time spent waiting for the write rate limit."),
		txnSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "meshrelay", Subsystem: "relay_etcd", Name: "txn_duration_seconds",
			Help:    "Round trip of etcd write transactions (committed or refused), rate limiting excluded.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms .. 4 s
		}),
		queueDepth: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "meshrelay", Subsystem: "relay_etcd", Name: "queue_depth",
			Help: "Dirty services waiting for the writer.",
		}, func() float64 { return float64(queueLen()) }),
		heldDeletions: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "meshrelay", Subsystem: "relay_etcd", Name: "held_deletions",
			Help: "Services whose removal the mass-deletion guard holds (still in etcd, gone upstream).",
		}, func() float64 { return float64(held()) }),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.txns, m.puts, m.deletes, m.bytes, m.skipped, m.retries, m.oversized,
		m.fenceFailures, m.generationChanges, m.holds, m.throttled, m.txnSeconds, m.queueDepth, m.heldDeletions}
}

func (m *metrics) recordError(err error) {
	m.mu.Lock()
	m.lastError = err.Error()
	m.lastErrorTime = time.Now()
	m.mu.Unlock()
}

// Metrics returns the Sink's Prometheus collectors
// (meshrelay_relay_etcd_*), for the caller to register.
func (s *Sink) Metrics() []prometheus.Collector {
	return append(s.metrics.collectors(), s.shards.fencedOps, s.shards.takeovers)
}

// Stats returns a snapshot of the metrics.
func (s *Sink) Stats() Stats {
	m := s.metrics
	n := func(c prometheus.Counter) uint64 { return uint64(promvalue.Of(c)) }
	st := Stats{
		Txns:                       n(m.txns),
		Puts:                       n(m.puts),
		Deletes:                    n(m.deletes),
		Bytes:                      n(m.bytes),
		Skipped:                    n(m.skipped),
		Retries:                    n(m.retries),
		Oversized:                  n(m.oversized),
		FenceFailures:              n(m.fenceFailures),
		GenerationChanges:          n(m.generationChanges),
		Holds:                      n(m.holds),
		QueueDepth:                 s.queue.Len(),
		HeldDeletions:              s.HeldDeletions(),
		Authorizations:             int(s.authzInEtcd.Load()),
		HeldAuthorizationDeletions: s.HeldAuthorizationDeletions(),
		Throttled:                  time.Duration(promvalue.Of(m.throttled) * float64(time.Second)),
		Generation:                 s.generation(),
	}
	m.mu.Lock()
	st.LastError, st.LastErrorTime = m.lastError, m.lastErrorTime
	m.mu.Unlock()
	return st
}
