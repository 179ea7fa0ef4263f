package measure

import (
	"cmp"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
)

// The stages of the relay-mode propagation lag, in order. Their durations
// add up, for each (change, node) pair, to the push → map lag.
const (
	StageRelayReceive  = "sim push → relay receive"
	StageRelayTxn      = "relay receive → txn sent (relay, coalescing)"
	StageEtcdCommit    = "txn sent → etcd commit"
	StageWatchDelivery = "etcd commit → watch delivery"
	StageAgentApply    = "watch delivery → agent apply"
)

// stageNames are the stages in order.
var stageNames = []string{StageRelayReceive, StageRelayTxn, StageEtcdCommit, StageWatchDelivery, StageAgentApply}

// Stage is the distribution of one stage's duration over the (change,
// node) pairs whose every timestamp is known.
type Stage struct {
	Name   string  `json:"name"`
	P50Ms  float64 `json:"p50Ms"`
	P99Ms  float64 `json:"p99Ms"`
	MeanMs float64 `json:"meanMs"`
	MaxMs  float64 `json:"maxMs"`
}

// Commit is one endpoint address that appeared in (Added) or left a
// service in a relay transaction: Observed is the relay's receipt of the
// push (observed_unix_nano of the value), Sent when the relay sent the
// transaction, At when etcd answered it (Unix nanoseconds), Rev its
// revision.
type Commit struct {
	Addr     string `json:"a"`
	Added    bool   `json:"add,omitempty"`
	Service  string `json:"s"`
	Rev      int64  `json:"r"`
	Observed int64  `json:"o"`
	Sent     int64  `json:"x"`
	At       int64  `json:"t"`
}

// Delivery is one watch response of a service that reached a node's agent,
// holding revisions up to Rev, at At (Unix nanoseconds).
type Delivery struct {
	Node    int32  `json:"n"`
	Service string `json:"s"`
	Rev     int64  `json:"r"`
	At      int64  `json:"t"`
}

// CommitLog runs in a relay's process: it keeps the slice puts and deletes
// of every committed transaction, raw, and turns them into Commits when
// asked (decoding is left out of the relay's hot path).
type CommitLog struct {
	space keyspace.Space

	mu   sync.Mutex
	txns []loggedTxn
}

type loggedTxn struct {
	rev, sent, at int64
	ops           []loggedOp
}

type loggedOp struct {
	key   string
	value []byte // nil: delete
}

// NewCommitLog returns an empty log for cluster's keyspace.
func NewCommitLog(cluster string) *CommitLog { return &CommitLog{space: keyspace.New(cluster)} }

// Add records a committed transaction's slice operations: sent when it
// was sent, at when etcd answered.
func (l *CommitLog) Add(rev int64, sent, at time.Time, keys []string, values [][]byte) {
	t := loggedTxn{rev: rev, sent: sent.UnixNano(), at: at.UnixNano()}
	for i, k := range keys {
		if sk, ok := l.space.ParseServiceKey(k); ok && sk.Kind == keyspace.KindSlice {
			t.ops = append(t.ops, loggedOp{key: k, value: values[i]})
		}
	}
	if len(t.ops) == 0 {
		return
	}
	l.mu.Lock()
	l.txns = append(l.txns, t)
	l.mu.Unlock()
}

// Since returns the address changes of the transactions committed at or
// after since (Unix nanoseconds), diffing each slice with its previous
// value.
func (l *CommitLog) Since(since int64) []Commit {
	l.mu.Lock()
	txns := slices.Clone(l.txns)
	l.mu.Unlock()
	slices.SortFunc(txns, func(a, b loggedTxn) int { return cmp.Compare(a.rev, b.rev) })
	held := map[string][]string{} // slice key → addresses
	var out []Commit
	for _, t := range txns {
		for _, op := range t.ops {
			sk, _ := l.space.ParseServiceKey(op.key)
			svc := sk.Service.String()
			var now []string
			var observed int64
			if op.value != nil {
				sl, err := model.DecodeSlice(op.value)
				if err != nil {
					continue
				}
				observed = sl.GetObservedUnixNano()
				for _, e := range sl.GetEndpoints() {
					now = append(now, e.GetAddress())
				}
				slices.Sort(now)
			}
			before := held[op.key]
			held[op.key] = now
			if t.at < since {
				continue
			}
			emit := func(addr string, added bool) {
				out = append(out, Commit{Addr: addr, Added: added, Service: svc, Rev: t.rev, Observed: observed, Sent: t.sent, At: t.at})
			}
			for _, a := range now {
				if _, found := slices.BinarySearch(before, a); !found {
					emit(a, true)
				}
			}
			for _, a := range before {
				if _, found := slices.BinarySearch(now, a); !found {
					emit(a, false)
				}
			}
		}
	}
	return out
}

// DeliveryLog collects the watch deliveries of all nodes of a pool, once
// enabled.
type DeliveryLog struct {
	Enabled atomic.Bool
	mu      sync.Mutex
	ds      []Delivery
}

// Add records that node's agent received svc's events up to rev at at.
func (l *DeliveryLog) Add(node int32, svc string, rev int64, at time.Time) {
	if !l.Enabled.Load() {
		return
	}
	l.mu.Lock()
	l.ds = append(l.ds, Delivery{Node: node, Service: svc, Rev: rev, At: at.UnixNano()})
	l.mu.Unlock()
}

// All returns the deliveries recorded.
func (l *DeliveryLog) All() []Delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ds)
}

// StageBucket are the stages of the changes of services held by Min..Max
// nodes (fan-out).
type StageBucket struct {
	Min     int     `json:"min"`
	Max     int     `json:"max"`
	Samples int     `json:"samples"`
	Stages  []Stage `json:"stages"`
}

// ComputeStages splits the lag of every (change, node) pair into its
// stages: the simulator's push (events), the relay's receipt and etcd's
// commit (commits), the agent's watch delivery (deliveries) and the map
// write (samples); over all pairs (stages) and by how many nodes hold the
// service (holders, as in ComputeLag). Pairs with a timestamp missing are
// left out; matched counts the others.
func ComputeStages(events []UpstreamEvent, commits []Commit, deliveries []Delivery, samples []ApplySample, holders func(service int) int) (stages []Stage, byHolders []StageBucket, matched int) {
	pushes := map[eventKey][]int64{}
	serviceOf := map[string]int{}
	for _, e := range events {
		if e.Push != 0 {
			k := eventKey{e.Addr, e.Added}
			pushes[k] = append(pushes[k], e.Push)
			serviceOf[e.Addr] = e.Service
		}
	}
	for _, p := range pushes {
		slices.Sort(p)
	}
	commitOf := groupByRev(commits, func(c Commit) eventKey { return eventKey{c.Addr, c.Added} }, func(c Commit) int64 { return c.Rev })
	type nodeService struct {
		node int32
		svc  string
	}
	delivered := groupByRev(deliveries, func(d Delivery) nodeService { return nodeService{d.Node, d.Service} }, func(d Delivery) int64 { return d.Rev })

	durations := make([][]float64, len(stageNames))
	bucketDurations := make([][][]float64, len(holderBuckets))
	for b := range bucketDurations {
		bucketDurations[b] = make([][]float64, len(stageNames))
	}
	type pair struct {
		node int32
		key  eventKey
	}
	seen := map[pair]struct{}{}
	for _, s := range samples {
		k := eventKey{s.Addr, s.Added}
		if _, dup := seen[pair{s.Node, k}]; dup {
			continue // another port of the same address, same write
		}
		p := pushes[k]
		i := sort.Search(len(p), func(i int) bool { return p[i] > s.At })
		if i == 0 {
			continue
		}
		push := p[i-1]
		// The latest commit of this change before the write.
		cs := commitOf[k]
		j := sort.Search(len(cs), func(j int) bool { return cs[j].At > s.At })
		if j == 0 || cs[j-1].Observed == 0 {
			continue
		}
		c := cs[j-1]
		// The first delivery to this node holding the commit's revision.
		ds := delivered[nodeService{s.Node, c.Service}]
		di := sort.Search(len(ds), func(i int) bool { return ds[i].Rev >= c.Rev })
		if di == len(ds) {
			continue
		}
		seen[pair{s.Node, k}] = struct{}{}
		ms := func(from, to int64) float64 { return float64(to-from) / float64(time.Millisecond) }
		each := []float64{ms(push, c.Observed), ms(c.Observed, c.Sent), ms(c.Sent, c.At), ms(c.At, ds[di].At), ms(ds[di].At, s.At)}
		h := holders(serviceOf[s.Addr])
		for i, d := range each {
			durations[i] = append(durations[i], d)
			for b, r := range holderBuckets {
				if h >= r[0] && h <= r[1] {
					bucketDurations[b][i] = append(bucketDurations[b][i], d)
				}
			}
		}
	}
	if len(durations[0]) == 0 {
		return nil, nil, 0
	}
	for b, d := range bucketDurations {
		if len(d[0]) > 0 {
			byHolders = append(byHolders, StageBucket{Min: holderBuckets[b][0], Max: holderBuckets[b][1], Samples: len(d[0]), Stages: stageStats(d)})
		}
	}
	return stageStats(durations), byHolders, len(durations[0])
}

// stageStats summarises the stages' durations (sorted in place).
func stageStats(durations [][]float64) []Stage {
	names := stageNames
	stages := make([]Stage, len(durations))
	for i, d := range durations {
		slices.Sort(d)
		sum := 0.0
		for _, v := range d {
			sum += v
		}
		stages[i] = Stage{Name: names[i], P50Ms: quantile(d, 0.5), P99Ms: quantile(d, 0.99),
			MeanMs: sum / float64(len(d)), MaxMs: d[len(d)-1]}
	}
	return stages
}

// groupByRev groups vs by key, each group sorted by revision.
func groupByRev[K comparable, V any](vs []V, key func(V) K, rev func(V) int64) map[K][]V {
	out := map[K][]V{}
	for _, v := range vs {
		out[key(v)] = append(out[key(v)], v)
	}
	for _, g := range out {
		slices.SortFunc(g, func(a, b V) int { return cmp.Compare(rev(a), rev(b)) })
	}
	return out
}
