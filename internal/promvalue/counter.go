package promvalue

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Counter is a Prometheus counter of whole counts that its owner reads
// without allocating (Load): Of and a registry read it like any counter.
// A Stats snapshot polled often (the scale harness reads 1,000 agents every
// second) costs atomic loads instead of a Write per metric.
type Counter struct {
	prometheus.CounterFunc
	n atomic.Int64
}

// NewCounter returns a Counter described by opts.
func NewCounter(opts prometheus.CounterOpts) *Counter { return newCounter(opts, 1) }

// NewSecondsCounter returns a Counter of nanoseconds (Add, Load) that
// Prometheus reads in seconds, as its _seconds_total name says.
func NewSecondsCounter(opts prometheus.CounterOpts) *Counter { return newCounter(opts, 1e-9) }

// newCounter returns a Counter that Prometheus reads as its count × unit.
func newCounter(opts prometheus.CounterOpts, unit float64) *Counter {
	c := &Counter{}
	c.CounterFunc = prometheus.NewCounterFunc(opts, func() float64 { return float64(c.n.Load()) * unit })
	return c
}

// Inc adds 1.
func (c *Counter) Inc() { c.n.Add(1) }

// Add adds n, which must not be negative.
func (c *Counter) Add(n int64) {
	if n < 0 {
		panic("promvalue: Counter.Add of a negative count")
	}
	c.n.Add(n)
}

// Load returns the count.
func (c *Counter) Load() int64 { return c.n.Load() }

// Gauge is a Prometheus gauge of whole counts read like Counter.
type Gauge struct {
	prometheus.GaugeFunc
	n atomic.Int64
}

// NewGauge returns a Gauge described by opts.
func NewGauge(opts prometheus.GaugeOpts) *Gauge {
	g := &Gauge{}
	g.GaugeFunc = prometheus.NewGaugeFunc(opts, func() float64 { return float64(g.n.Load()) })
	return g
}

// Add adds n (negative: subtracts).
func (g *Gauge) Add(n int64) { g.n.Add(n) }

// Set sets the value.
func (g *Gauge) Set(n int64) { g.n.Store(n) }

// Load returns the value.
func (g *Gauge) Load() int64 { return g.n.Load() }
