package relay

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsPerInstance: two relays in one process register into their
// own registries, and every metric is defined once.
func TestMetricsPerInstance(t *testing.T) {
	names := func(reg *prometheus.Registry) map[string]bool {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, mf := range mfs {
			if out[mf.GetName()] {
				t.Errorf("metric %s gathered twice", mf.GetName())
			}
			out[mf.GetName()] = true
		}
		return out
	}
	var regs []*prometheus.Registry
	for range 2 {
		reg := prometheus.NewRegistry()
		if _, err := New(nil, Options{Istiod: "127.0.0.1:1", Registerer: reg}); err != nil {
			t.Fatal(err)
		}
		regs = append(regs, reg)
	}
	for _, reg := range regs {
		got := names(reg)
		for _, want := range []string{
			"meshrelay_relay_services", "meshrelay_relay_complete_syncs_total",
			"meshrelay_relay_xds_acks_total", "meshrelay_relay_xds_connected", "meshrelay_relay_xds_streams_total",
			"meshrelay_relay_etcd_txns_total", "meshrelay_relay_etcd_queue_depth", "meshrelay_relay_etcd_txn_duration_seconds",
			"meshrelay_relay_etcd_throttled_seconds_total", "meshrelay_relay_etcd_generation_changes_total",
		} {
			if !got[want] {
				t.Errorf("registry lacks %s (has %v)", want, got)
			}
		}
	}
	// One registry cannot hold two relays: the metrics are not hidden
	// behind a shared global.
	if _, err := New(nil, Options{Istiod: "127.0.0.1:1", Registerer: regs[0]}); err == nil {
		t.Error("a second relay registered into the same registry")
	}
}
