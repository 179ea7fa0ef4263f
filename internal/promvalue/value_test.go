package promvalue

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestOf(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c"})
	c.Add(3)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	g.Set(-2)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h"})
	h.Observe(1)
	h.Observe(2)
	f := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "f"}, func() float64 { return 7 })
	for name, tc := range map[string]struct {
		m    prometheus.Metric
		want float64
	}{"counter": {c, 3}, "gauge": {g, -2}, "histogram": {h, 2}, "func": {f, 7}} {
		if got := Of(tc.m); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

func TestByLabel(t *testing.T) {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "v"}, []string{"type"})
	v.WithLabelValues("a").Set(1)
	v.WithLabelValues("b").Set(5)
	got := ByLabel(v)
	if len(got) != 2 || got["a"] != 1 || got["b"] != 5 {
		t.Fatalf("ByLabel = %v", got)
	}
}
