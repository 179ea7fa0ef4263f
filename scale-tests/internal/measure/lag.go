package measure

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Lag is the push → map propagation lag of one mode: for every
// endpoint change the simulator pushed and every node that uses the
// service, the time from the push to the node's datapath write.
type Lag struct {
	// Samples is the number of (change, node) pairs measured.
	Samples int `json:"samples"`
	// Expected is the number of (change, node) pairs there are: a change
	// of a service, times the nodes that hold it. Expected - Samples were
	// never written as such, typically because a later change of the same
	// service superseded them first (coalescing: written once, at the
	// latest state).
	Expected int `json:"expected"`
	// Unmatched counts node writes of an address with no push before them
	// (e.g. written by the initial sync).
	Unmatched int     `json:"unmatched"`
	P50Ms     float64 `json:"p50Ms"`
	P90Ms     float64 `json:"p90Ms"`
	P99Ms     float64 `json:"p99Ms"`
	MaxMs     float64 `json:"maxMs"`
	MeanMs    float64 `json:"meanMs"`
	// CDF is the lag distribution at 101 quantiles (0, 1, ..., 100 %), in
	// milliseconds, for plots.
	CDF []float64 `json:"cdf,omitempty"`
	// ByHolders splits the samples by how many nodes hold the changed
	// service: a change of a service every node uses fans out to all of
	// them at once.
	ByHolders []LagBucket `json:"byHolders,omitempty"`
	// Stages splits the lag of relay mode into its stages (ComputeStages),
	// over StageSamples of the Samples.
	Stages          []Stage       `json:"stages,omitempty"`
	StagesByHolders []StageBucket `json:"stagesByHolders,omitempty"`
	StageSamples    int           `json:"stageSamples,omitempty"`
	// Fanout is the largest fan-out of relay mode and the CPU it cost.
	Fanout *Fanout `json:"fanout,omitempty"`
}

// LagBucket is the lag of the changes of services held by Min..Max nodes.
type LagBucket struct {
	Min     int     `json:"min"`
	Max     int     `json:"max"`
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50Ms"`
	P99Ms   float64 `json:"p99Ms"`
	MaxMs   float64 `json:"maxMs"`
}

// holderBuckets are the ranges of ByHolders.
var holderBuckets = [][2]int{{1, 9}, {10, 99}, {100, 999}, {1000, 1 << 30}}

// eventKey identifies an upstream change by address and direction.
type eventKey struct {
	addr  string
	added bool
}

// ComputeLag matches node writes (samples) with the pushes that caused
// them (events). holders returns the number of nodes holding a service.
func ComputeLag(events []UpstreamEvent, samples []ApplySample, holders func(service int) int) Lag {
	var res Lag
	pushes := map[eventKey][]int64{}
	serviceOf := map[string]int{}
	for _, e := range events {
		if e.Push == 0 {
			continue
		}
		k := eventKey{e.Addr, e.Added}
		pushes[k] = append(pushes[k], e.Push)
		serviceOf[e.Addr] = e.Service
		res.Expected += holders(e.Service)
	}
	byBucket := make([][]float64, len(holderBuckets))
	for _, p := range pushes {
		slices.Sort(p)
	}
	type matched struct {
		node int32
		key  eventKey
		push int64
	}
	seen := map[matched]struct{}{}
	var lags []float64
	for _, s := range samples {
		k := eventKey{s.Addr, s.Added}
		p := pushes[k]
		// The latest push of this change before the write.
		i := sort.Search(len(p), func(i int) bool { return p[i] > s.At })
		if i == 0 {
			res.Unmatched++
			continue
		}
		m := matched{node: s.Node, key: k, push: p[i-1]}
		if _, dup := seen[m]; dup {
			continue // another port of the same address, same write
		}
		seen[m] = struct{}{}
		lag := float64(s.At-p[i-1]) / float64(time.Millisecond)
		lags = append(lags, lag)
		h := holders(serviceOf[s.Addr])
		for b, r := range holderBuckets {
			if h >= r[0] && h <= r[1] {
				byBucket[b] = append(byBucket[b], lag)
			}
		}
	}
	res.Samples = len(lags)
	if len(lags) == 0 {
		return res
	}
	slices.Sort(lags)
	sum := 0.0
	for _, l := range lags {
		sum += l
	}
	res.MeanMs = sum / float64(len(lags))
	res.P50Ms = quantile(lags, 0.50)
	res.P90Ms = quantile(lags, 0.90)
	res.P99Ms = quantile(lags, 0.99)
	res.MaxMs = lags[len(lags)-1]
	res.CDF = make([]float64, 101)
	for i := range res.CDF {
		res.CDF[i] = quantile(lags, float64(i)/100)
	}
	for b, l := range byBucket {
		if len(l) == 0 {
			continue
		}
		slices.Sort(l)
		res.ByHolders = append(res.ByHolders, LagBucket{Min: holderBuckets[b][0], Max: holderBuckets[b][1], Samples: len(l),
			P50Ms: quantile(l, 0.5), P99Ms: quantile(l, 0.99), MaxMs: l[len(l)-1]})
	}
	return res
}

// quantile returns the q-quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// PushedBetween returns the events whose push happened in [from, to]
// (Unix nanoseconds): the changes of a window, such as a relay failover,
// whose lag ComputeLag then measures on its own. Events not pushed yet
// are left out.
func PushedBetween(events []UpstreamEvent, from, to int64) []UpstreamEvent {
	var out []UpstreamEvent
	for _, e := range events {
		if e.Push != 0 && e.Push >= from && e.Push <= to {
			out = append(out, e)
		}
	}
	return out
}
