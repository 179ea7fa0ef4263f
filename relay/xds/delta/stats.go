package delta

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrelay/meshrelay/relay/xds/reconnect"
)

// Stats is a snapshot of the client's metrics, for callers and tests; the
// metrics themselves live only in the Prometheus collectors (see
// Client.Metrics). Subscribed stays empty: every type is wildcard.
type Stats = reconnect.Stats

// Metrics returns the client's Prometheus collectors
// (meshrelay_relay_xds_*), for the caller to register.
func (c *Client) Metrics() []prometheus.Collector {
	return append(c.stats.Collectors(), c.health.Gauge)
}
