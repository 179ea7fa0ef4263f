package measure

import (
	"cmp"
	"slices"
)

// Fanout is the largest fan-out of a relay-mode scenario: the one etcd
// transaction whose change of a service reached the most nodes, and the
// CPU every component used from the moment the relay sent it to the
// moment its last node received it. The tail of the lag is made of such
// fan-outs (a change of a service in the Zipf head), so this is where the
// time of the p99 goes.
type Fanout struct {
	Service string `json:"service"`
	// Nodes is the number of watch deliveries of the change (one per node
	// that holds the service and received exactly this revision).
	Nodes int   `json:"nodes"`
	Rev   int64 `json:"rev"`
	// Sent, Commit, First and Last are Unix nanoseconds: the relay sent
	// the transaction, etcd answered it, the first and the last node
	// received it.
	Sent   int64 `json:"sent"`
	Commit int64 `json:"commit"`
	First  int64 `json:"first"`
	Last   int64 `json:"last"`
	// CPUMs is each component's CPU milliseconds in [Sent, Last]
	// (Sampler.CPUBetween).
	CPUMs map[string]float64 `json:"cpuMs,omitempty"`
}

// LargestFanout finds the transaction whose change of one service was
// delivered to the most nodes (deliveries of exactly its revision); ties
// go to the earlier revision. It reports false when no commit has a
// delivery.
func LargestFanout(commits []Commit, deliveries []Delivery) (Fanout, bool) {
	type change struct {
		svc string
		rev int64
	}
	txn := map[change]Commit{}
	for _, c := range commits {
		txn[change{c.Service, c.Rev}] = c
	}
	got := map[change][]int64{}
	for _, d := range deliveries {
		k := change{d.Service, d.Rev}
		if _, ok := txn[k]; ok {
			got[k] = append(got[k], d.At)
		}
	}
	var best Fanout
	for k, at := range got {
		if len(at) < best.Nodes || (len(at) == best.Nodes && k.rev > best.Rev) {
			continue
		}
		c := txn[k]
		best = Fanout{Service: k.svc, Rev: k.rev, Nodes: len(at), Sent: c.Sent, Commit: c.At,
			First: slices.Min(at), Last: slices.Max(at)}
	}
	return best, best.Nodes > 0
}

// TotalCPUMs is the CPU of every component in the fan-out's window.
func (f Fanout) TotalCPUMs() float64 {
	total := 0.0
	for _, ms := range f.CPUMs {
		total += ms
	}
	return total
}

// Components returns the components of CPUMs, the most CPU first.
func (f Fanout) Components() []string {
	names := make([]string, 0, len(f.CPUMs))
	for n := range f.CPUMs {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(f.CPUMs[b], f.CPUMs[a]), cmp.Compare(a, b))
	})
	return names
}
