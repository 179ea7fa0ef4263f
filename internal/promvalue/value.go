package promvalue

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Of returns the value of a counter or gauge (including CounterFunc and
// GaugeFunc), or the sample count of a histogram. It is 0 for a metric
// that cannot be read.
func Of(m prometheus.Metric) float64 {
	var d dto.Metric
	if m.Write(&d) != nil {
		return 0
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	case d.Histogram != nil:
		return float64(d.Histogram.GetSampleCount())
	}
	return 0
}

// ByLabel collects c, a vector with one label, and returns each child's
// value by its label value.
func ByLabel(c prometheus.Collector) map[string]float64 {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	out := map[string]float64{}
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil || len(d.Label) == 0 {
			continue
		}
		out[d.Label[0].GetValue()] = Of(m)
	}
	return out
}
