package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrelay/meshrelay/relay/etcdsink"
)

// sinkDescs export etcdsink.Stats.
type sinkDescs struct {
	txns, puts, deletes, bytes, skipped, retries, oversized, fence, generations *prometheus.Desc
	queue, throttled                                                            *prometheus.Desc
}

func newSinkDescs() sinkDescs {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("meshrelay_relay_etcd_"+name, help, nil, nil)
	}
	return sinkDescs{
		txns:        d("txns_total", "etcd transactions committed."),
		puts:        d("puts_total", "etcd keys put (values, VIP index entries, synced markers)."),
		deletes:     d("deletes_total", "etcd delete operations."),
		bytes:       d("written_bytes_total", "Bytes of keys and values in committed transactions."),
		skipped:     d("skipped_unchanged_total", "Services processed with nothing to write (identical content)."),
		retries:     d("retries_total", "Failed transactions retried with backoff."),
		oversized:   d("oversized_services_total", "Services too large for one transaction (not written)."),
		fence:       d("fence_failures_total", "Transactions refused by the shard fence."),
		generations: d("generation_changes_total", "Reloads after etcd's generation vanished or changed."),
		queue:       d("queue_depth", "Dirty services waiting for the writer."),
		throttled:   d("throttled_seconds_total", "Time spent waiting for the write rate limit."),
	}
}

func (s sinkDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.txns, s.puts, s.deletes, s.bytes, s.skipped, s.retries, s.oversized, s.fence, s.generations, s.queue, s.throttled} {
		ch <- d
	}
}

func (s sinkDescs) collect(ch chan<- prometheus.Metric, st etcdsink.Stats) {
	c := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	c(s.txns, float64(st.Txns))
	c(s.puts, float64(st.Puts))
	c(s.deletes, float64(st.Deletes))
	c(s.bytes, float64(st.Bytes))
	c(s.skipped, float64(st.Skipped))
	c(s.retries, float64(st.Retries))
	c(s.oversized, float64(st.Oversized))
	c(s.fence, float64(st.FenceFailures))
	c(s.generations, float64(st.GenerationChanges))
	c(s.throttled, st.Throttled.Seconds())
	ch <- prometheus.MustNewConstMetric(s.queue, prometheus.GaugeValue, float64(st.QueueDepth))
}
