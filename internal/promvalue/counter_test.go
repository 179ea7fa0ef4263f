package promvalue

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCounterAndGaugeReadBothWays(t *testing.T) {
	c := NewCounter(prometheus.CounterOpts{Name: "c"})
	c.Inc()
	c.Add(4)
	g := NewGauge(prometheus.GaugeOpts{Name: "g"})
	g.Add(3)
	g.Add(-5)
	if c.Load() != 5 || Of(c) != 5 {
		t.Errorf("counter: Load %d, Of %v; want 5", c.Load(), Of(c))
	}
	if g.Load() != -2 || Of(g) != -2 {
		t.Errorf("gauge: Load %d, Of %v; want -2", g.Load(), Of(g))
	}
	r := prometheus.NewRegistry()
	if err := r.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := r.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetMetric()[0].GetCounter().GetValue() != 5 {
		t.Errorf("gathered %v, %v; want one counter of 5", mfs, err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Add(-1) did not panic")
		}
	}()
	c.Add(-1)
}

func TestSecondsCounter(t *testing.T) {
	c := NewSecondsCounter(prometheus.CounterOpts{Name: "s_seconds_total"})
	c.Add(1500 * 1000 * 1000)
	if c.Load() != 1.5e9 || Of(c) != 1.5 {
		t.Errorf("Load %d, Of %v; want 1.5e9 ns, 1.5 s", c.Load(), Of(c))
	}
}
