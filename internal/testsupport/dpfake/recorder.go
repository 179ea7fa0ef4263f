package dpfake

import (
	"context"
	"sync"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// Recorder wraps a Datapath and remembers every change set applied
// through it, for tests that assert on what was (not) written.
type Recorder struct {
	datapath.Datapath
	mu   sync.Mutex
	sets []datapath.ChangeSet
}

// NewRecorder wraps dp.
func NewRecorder(dp datapath.Datapath) *Recorder { return &Recorder{Datapath: dp} }

// Apply records cs and applies it.
func (r *Recorder) Apply(ctx context.Context, cs datapath.ChangeSet) (datapath.ApplyStats, error) {
	r.mu.Lock()
	r.sets = append(r.sets, cs)
	r.mu.Unlock()
	return r.Datapath.Apply(ctx, cs)
}

// Entries is the number of entries in every change set applied so far.
func (r *Recorder) Entries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, cs := range r.sets {
		n += cs.Len()
	}
	return n
}

// DeletedFrontends lists every frontend deleted so far ("tcp/VIP:port").
func (r *Recorder) DeletedFrontends() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, cs := range r.sets {
		for _, k := range cs.DeleteFrontends {
			out = append(out, k.String())
		}
	}
	return out
}

// DeletedBackends is the number of backend entries deleted so far.
func (r *Recorder) DeletedBackends() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, cs := range r.sets {
		n += len(cs.DeleteBackends)
	}
	return n
}
