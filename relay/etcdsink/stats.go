package etcdsink

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats are the Sink's counters since New, for metrics and tests.
type Stats struct {
	Txns    uint64 // committed transactions
	Puts    uint64 // keys put (values, VIP index entries, synced markers)
	Deletes uint64 // delete operations (a deleted service's prefix counts once)
	Bytes   uint64 // keys and values sent in committed transactions

	// Skipped counts services processed with nothing to write: an identical
	// re-push, or the delete of a service etcd never held.
	Skipped uint64
	// Retries counts failed transactions whose services were re-queued.
	Retries uint64
	// Oversized counts services that cannot be written in one transaction
	// (more than MaxTxnOps operations, or larger than etcd's request limit).
	Oversized uint64
	// FenceFailures counts transactions refused by Options.Fence.
	FenceFailures uint64
	// GenerationChanges counts reloads after etcd's generation vanished or
	// changed.
	GenerationChanges uint64

	// QueueDepth is the number of dirty services (and pending marker
	// writes) waiting for the writer.
	QueueDepth int
	// Throttled is the time spent waiting for the token bucket.
	Throttled time.Duration
	// Generation is the etcd generation id the Sink writes under.
	Generation string
	// LastError is the latest write error, empty when none happened yet.
	LastError     string
	LastErrorTime time.Time
}

// counters is the live form of Stats.
type counters struct {
	txns, puts, deletes, bytes atomic.Uint64
	skipped, retries           atomic.Uint64
	oversized, fenceFailures   atomic.Uint64
	generationChanges          atomic.Uint64
	throttled                  atomic.Int64 // nanoseconds

	mu            sync.Mutex
	lastError     string
	lastErrorTime time.Time
}

func (c *counters) recordError(err error) {
	c.mu.Lock()
	c.lastError = err.Error()
	c.lastErrorTime = time.Now()
	c.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (s *Sink) Stats() Stats {
	c := &s.counters
	st := Stats{
		Txns:              c.txns.Load(),
		Puts:              c.puts.Load(),
		Deletes:           c.deletes.Load(),
		Bytes:             c.bytes.Load(),
		Skipped:           c.skipped.Load(),
		Retries:           c.retries.Load(),
		Oversized:         c.oversized.Load(),
		FenceFailures:     c.fenceFailures.Load(),
		GenerationChanges: c.generationChanges.Load(),
		QueueDepth:        s.queue.Len(),
		Throttled:         time.Duration(c.throttled.Load()),
		Generation:        s.generation(),
	}
	c.mu.Lock()
	st.LastError, st.LastErrorTime = c.lastError, c.lastErrorTime
	c.mu.Unlock()
	return st
}
