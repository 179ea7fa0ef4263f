package measure

import (
	"maps"
	"slices"
	"sync"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
)

// UpstreamEvent is one endpoint appearing in (Added) or leaving a service,
// and when the simulator pushed it. Endpoint addresses are unique in the
// simulator, so a node that writes or deletes a backend of that address
// has applied exactly this change: the difference of the two times is the
// change's propagation lag.
type UpstreamEvent struct {
	Service int    `json:"s"`
	Addr    string `json:"a"`
	Added   bool   `json:"add,omitempty"`
	// Push is the Unix time in nanoseconds of the push that carried the
	// change; 0 while that push has not happened (debounce).
	Push int64 `json:"p"`
}

// Recorder runs in the simulator's process. It turns the mutations the
// harness makes into upstreamEvents stamped with the time of the push that
// carried them.
//
// A push carries a mutation when it is the first push of the mutated
// service after the mutation started (mark). With a debounce, a push that
// was already being flushed while the mutation started could be taken for
// it; the error is then at most one debounce period, and rare.
type Recorder struct {
	sim *istiodsim.Sim

	mu sync.Mutex
	// pushes counts pushes; recent holds the last few (count, time) per
	// service.
	pushes  uint64
	recent  map[int][]pushMark
	current map[int][]string // endpoint addresses per live service, as last recorded
	events  []UpstreamEvent
	pending map[int][]pendingEvent
	// serviceChanges sums the services every push carried.
	serviceChanges int64
	lastPush       int64
}

type pushMark struct {
	seq uint64
	at  int64
}

// pendingEvent is an event (index into events) waiting for the first push
// of its service after mark after.
type pendingEvent struct {
	event int
	after uint64
}

func NewRecorder(sim *istiodsim.Sim) *Recorder {
	r := &Recorder{sim: sim, recent: map[int][]pushMark{}, current: map[int][]string{}, pending: map[int][]pendingEvent{}}
	for _, t := range sim.Truth() {
		r.current[t.Index] = endpointAddrs(t)
	}
	return r
}

func endpointAddrs(t istiodsim.ServiceTruth) []string {
	out := make([]string, len(t.Endpoints))
	for i, e := range t.Endpoints {
		out[i] = e.Address
	}
	slices.Sort(out)
	return out
}

// OnPush is the simulator's OnPush hook.
func (r *Recorder) OnPush(info istiodsim.PushInfo) {
	at := info.Time.UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushes++
	seq := r.pushes
	r.lastPush = at
	r.serviceChanges += int64(len(info.Services))
	for _, svc := range info.Services {
		marks := append(r.recent[svc], pushMark{seq: seq, at: at})
		if len(marks) > 4 {
			marks = marks[len(marks)-4:]
		}
		r.recent[svc] = marks
		waiting := r.pending[svc]
		if len(waiting) == 0 {
			continue
		}
		kept := waiting[:0]
		for _, p := range waiting {
			if seq > p.after {
				r.events[p.event].Push = at
			} else {
				kept = append(kept, p)
			}
		}
		if len(kept) == 0 {
			delete(r.pending, svc)
		} else {
			r.pending[svc] = kept
		}
	}
}

// Mark returns the push count before a mutation.
func (r *Recorder) Mark() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pushes
}

// Record compares the simulator's truth of the services in marks with
// what it last recorded, and logs every endpoint that appeared or left,
// stamped with the first push of its service after the service's mark
// (taken with mark just before the service was mutated). It reads the
// truth of the marked services only; callers batch several mutations per
// call.
func (r *Recorder) Record(marks map[int]uint64) {
	r.diff(marks, 0, false)
}

// RecordAll is record for a mutation of every service, marked after.
func (r *Recorder) RecordAll(after uint64) {
	r.diff(nil, after, true)
}

func (r *Recorder) diff(marks map[int]uint64, after uint64, all bool) {
	var truth []istiodsim.ServiceTruth
	if all {
		truth = r.sim.Truth()
	} else {
		// Only the marked services: a copy of the whole mesh twice a
		// second took CPU the scenario's components compete for.
		truth = r.sim.TruthOf(slices.Collect(maps.Keys(marks)))
	}
	byIndex := make(map[int]istiodsim.ServiceTruth, len(truth))
	for _, t := range truth {
		byIndex[t.Index] = t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if all {
		marks = make(map[int]uint64, len(byIndex))
		for i := range byIndex {
			marks[i] = after
		}
		for i := range r.current {
			marks[i] = after
		}
	}
	for svc, after := range marks {
		var now []string
		if t, ok := byIndex[svc]; ok {
			now = endpointAddrs(t)
		}
		old := r.current[svc]
		for _, a := range now {
			if _, found := slices.BinarySearch(old, a); !found {
				r.addEvent(UpstreamEvent{Service: svc, Addr: a, Added: true}, after)
			}
		}
		for _, a := range old {
			if _, found := slices.BinarySearch(now, a); !found {
				r.addEvent(UpstreamEvent{Service: svc, Addr: a}, after)
			}
		}
		if now == nil {
			delete(r.current, svc)
		} else {
			r.current[svc] = now
		}
	}
}

func (r *Recorder) addEvent(ev UpstreamEvent, after uint64) {
	for _, m := range r.recent[ev.Service] {
		if m.seq > after {
			ev.Push = m.at
			break
		}
	}
	r.events = append(r.events, ev)
	if ev.Push == 0 {
		r.pending[ev.Service] = append(r.pending[ev.Service], pendingEvent{event: len(r.events) - 1, after: after})
	}
}

// EventsFrom returns the events from index from on, and how many events
// still wait for their push.
func (r *Recorder) EventsFrom(from int) (evs []UpstreamEvent, unstamped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if from < len(r.events) {
		evs = slices.Clone(r.events[from:])
	}
	for _, p := range r.pending {
		unstamped += len(p)
	}
	return evs, unstamped
}

// Live returns the indexes of the live services, sorted, and their
// endpoint counts.
func (r *Recorder) Live() (idx []int, endpoints map[int]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	endpoints = make(map[int]int, len(r.current))
	for i, a := range r.current {
		idx = append(idx, i)
		endpoints[i] = len(a)
	}
	slices.Sort(idx)
	return idx, endpoints
}

// Counters returns the number of events, service changes pushed and the
// time of the last push.
func (r *Recorder) Counters() (events int, serviceChanges int64, lastPush int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events), r.serviceChanges, r.lastPush
}
