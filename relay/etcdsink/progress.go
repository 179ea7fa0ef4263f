package etcdsink

import (
	"fmt"
	"sync/atomic"
	"time"
)

// progress tracks whether the writer moves while it has work: the
// relay's liveness (/healthz).
type progress struct {
	// last is when the writer last made progress (unix nanoseconds): a
	// batch written, or work taken up after a success.
	last atomic.Int64
	// busy is true while a batch is being processed.
	busy atomic.Bool
	// failing is true after a batch failed, until one succeeds. Owned by
	// the Run goroutine.
	failing bool
}

// start records that the writer took up a batch.
func (p *progress) start(now time.Time) {
	if !p.failing {
		p.last.Store(now.UnixNano())
	}
	p.busy.Store(true)
}

// done records the end of a batch.
func (p *progress) done(now time.Time, err error) {
	p.busy.Store(false)
	p.failing = err != nil
	if err == nil {
		p.last.Store(now.UnixNano())
	}
}

// committed records a committed transaction.
func (p *progress) committed(now time.Time) { p.last.Store(now.UnixNano()) }

// Stalled reports whether the writer has had work pending (queued or in
// flight) without making progress for longer than bound, e.g. because etcd
// blocks or keeps refusing its transactions. The reason names how long.
func (s *Sink) Stalled(bound time.Duration) (bool, string) {
	pending := s.queue.Len()
	if pending == 0 && !s.progress.busy.Load() {
		return false, ""
	}
	last := s.progress.last.Load()
	if last == 0 {
		return false, "" // Run has not started yet
	}
	idle := time.Since(time.Unix(0, last))
	if idle <= bound {
		return false, ""
	}
	return true, fmt.Sprintf("etcd writer made no progress for %v with %d services pending", idle.Round(time.Second), pending)
}
