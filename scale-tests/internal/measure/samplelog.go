package measure

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// ApplySample is one backend address written to (Added) or deleted from a
// node's maps, at At (Unix nanoseconds).
type ApplySample struct {
	Node  int32      `json:"n"`
	Addr  string     `json:"a"`
	Added bool       `json:"add,omitempty"`
	At    int64      `json:"t"`
	addr  netip.Addr // Addr before encoding
}

// SampleLog collects the samples of all nodes of a pool, once enabled
// (the initial sync has no upstream events to match).
type SampleLog struct {
	// Enabled switches recording on.
	Enabled atomic.Bool
	mu      sync.Mutex
	samples []ApplySample
}

// addRecorded adds samples of writes made while recording was enabled.
func (l *SampleLog) addRecorded(s []ApplySample) {
	if len(s) == 0 {
		return
	}
	l.mu.Lock()
	l.samples = append(l.samples, s...)
	l.mu.Unlock()
}

// From returns the samples from index from on (call each probe's Settle
// first), with their addresses
// formatted, and the index to ask from next.
func (l *SampleLog) From(from int) ([]ApplySample, int) {
	l.mu.Lock()
	var out []ApplySample
	if from < len(l.samples) {
		out = append(out, l.samples[from:]...)
	}
	next := len(l.samples)
	l.mu.Unlock()
	for i := range out {
		out[i].Addr = out[i].addr.String()
	}
	return out, next
}
