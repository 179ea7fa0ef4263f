package relay

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics returns every collector of the relay: the xDS client's
// (meshrelay_relay_xds_*), the etcd writer's (meshrelay_relay_etcd_*) and
// the relay's own, which read the relay's state at scrape time.
func (r *Relay) metrics() []prometheus.Collector {
	locked := func(read func() int) func() float64 {
		return func() float64 {
			r.mu.Lock()
			defer r.mu.Unlock()
			return float64(read())
		}
	}
	own := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "meshrelay", Subsystem: "relay", Name: "services",
			Help: "Services present upstream at the last complete sync.",
		}, locked(func() int { return r.services })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "meshrelay", Subsystem: "relay", Name: "complete_syncs_total",
			Help: "Complete upstream syncs (at most one per stream).",
		}, locked(func() int { return r.completes })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "meshrelay", Subsystem: "relay", Name: "rds_routes_pending",
			Help: "RDS routes listeners read that have not arrived: while any is, service updates are held.",
		}, func() float64 { return float64(r.routes.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "meshrelay", Subsystem: "relay", Name: "rds_route_pending_seconds",
			Help: "How long the longest-missing RDS route listeners read has been missing (0 when none is).",
		}, func() float64 {
			if _, since, ok := r.routes.oldest(); ok {
				return time.Since(since).Seconds()
			}
			return 0
		}),
	}
	all := append(append(own, r.sink.Metrics()...), r.client.Metrics()...)
	if r.membership != nil {
		all = append(all, r.membership.Metrics()...)
	}
	return all
}
