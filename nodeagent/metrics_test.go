package nodeagent

import (
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// TestMetricsPerAgentRegistry registers two agents' metrics in registries
// of their own and checks the exported names and that Stats reads the
// same collectors.
func TestMetricsPerAgentRegistry(t *testing.T) {
	e := newEnv(t)
	var agents []*Agent
	var regs []*prometheus.Registry
	for range 2 {
		reg := prometheus.NewRegistry()
		a, err := New(e.client, datapath.NewMemory(datapath.MemoryOptions{}), Options{Cluster: testCluster, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		agents, regs = append(agents, a), append(regs, reg)
	}
	agents[0].m.events.Add(3)
	agents[0].m.missesKnown.Inc()
	agents[0].m.lag.Observe(0.002)
	mfs, err := regs[0].Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			names[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	for _, want := range []string{"meshrelay_nodeagent_events_total", "meshrelay_nodeagent_misses_total",
		"meshrelay_nodeagent_propagation_lag_seconds", "meshrelay_nodeagent_ready", "meshrelay_nodeagent_services",
		"meshrelay_nodeagent_etcd_watches", "meshrelay_nodeagent_etcd_vip_gets_total", "meshrelay_nodeagent_map_entries"} {
		if _, ok := names[want]; !ok {
			t.Errorf("%s not exported", want)
		}
	}
	if names["meshrelay_nodeagent_events_total"] != 3 || names["meshrelay_nodeagent_propagation_lag_seconds"] != 1 {
		t.Errorf("events %v, lag samples %v; want 3 and 1", names["meshrelay_nodeagent_events_total"], names["meshrelay_nodeagent_propagation_lag_seconds"])
	}
	if st := agents[0].Stats(); st.Events != 3 || st.Misses != 1 || st.MissesKnown != 1 || st.Lag.Count != 1 {
		t.Errorf("stats %+v: want 3 events, 1 known miss, 1 lag sample", st)
	}
	if st := agents[1].Stats(); st.Events != 0 || st.Lag.Count != 0 {
		t.Errorf("the second agent shares counts: %+v", st)
	}
}

func TestHistogramStatsInterpolates(t *testing.T) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Buckets: []float64{1, 2, 4}})
	if st := histogramStats(h); st.Count != 0 || st.P50 != 0 {
		t.Fatalf("empty: %+v", st)
	}
	for _, v := range []float64{0.5, 1.5, 1.5, 3} {
		h.Observe(v)
	}
	st := histogramStats(h)
	// Ranks: p50 = 2nd of 4, in (1, 2] holding the 2nd and 3rd: 1 + 1*(2-1)/2.
	if st.Count != 4 || st.Sum != 6.5 || math.Abs(st.P50-1.5) > 1e-9 {
		t.Fatalf("%+v, want count 4, sum 6.5, p50 1.5", st)
	}
	if st.P99 <= 2 || st.P99 > 4 {
		t.Fatalf("p99 %v, want in (2, 4]", st.P99)
	}
	h.Observe(100) // beyond the last bucket: answered by its lower bound
	if st := histogramStats(h); st.P99 != 4 {
		t.Fatalf("p99 with an observation past the buckets: %v, want 4", st.P99)
	}
}
