package shard

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrelay/meshrelay/internal/promvalue"
)

// Stats is a snapshot of a Membership, read from its metrics.
type Stats struct {
	// Held are the shards led, ascending.
	Held []int
	// Members is the number of live members in the latest table read.
	Members int
	// LeadershipChanges counts shards taken and given up.
	LeadershipChanges uint64
	// Deposed counts shards dropped because a write was refused by the
	// fence.
	Deposed uint64
}

// metrics are a Membership's Prometheus collectors
// (meshrelay_relay_shard_*): the only storage of its counters.
type metrics struct {
	changes, deposed prometheus.Counter
	held, members    prometheus.GaugeFunc
}

func newMetrics(m *Membership) *metrics {
	return &metrics{
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "meshrelay", Subsystem: "relay_shard", Name: "leadership_changes_total",
			Help: "Shards this replica started or stopped leading.",
		}),
		deposed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "meshrelay", Subsystem: "relay_shard", Name: "deposed_total",
			Help: "Shards dropped because etcd refused a write on the leadership fence.",
		}),
		held: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "meshrelay", Subsystem: "relay_shard", Name: "held",
			Help: "Shards this replica leads.",
		}, func() float64 { return float64(len(m.Held())) }),
		members: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "meshrelay", Subsystem: "relay_shard", Name: "members",
			Help: "Live relay replicas (relays/ keys) at the latest read.",
		}, func() float64 {
			m.mu.Lock()
			defer m.mu.Unlock()
			return float64(m.members)
		}),
	}
}

// Metrics returns the Membership's Prometheus collectors, for the caller
// to register.
func (m *Membership) Metrics() []prometheus.Collector {
	return []prometheus.Collector{m.metrics.changes, m.metrics.deposed, m.metrics.held, m.metrics.members}
}

// Stats returns a snapshot.
func (m *Membership) Stats() Stats {
	m.mu.Lock()
	members := m.members
	m.mu.Unlock()
	return Stats{
		Held:              m.Held(),
		Members:           members,
		LeadershipChanges: uint64(promvalue.Of(m.metrics.changes)),
		Deposed:           uint64(promvalue.Of(m.metrics.deposed)),
	}
}
