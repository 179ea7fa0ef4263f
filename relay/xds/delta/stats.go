package delta

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the client's counters, for metrics and debugging.
// Counters only grow over the client's life.
type Stats struct {
	StreamsOpened uint64 // streams successfully opened
	Responses     uint64 // responses received (accepted or not)
	ACKs          uint64 // responses accepted and ACKed
	NACKs         uint64 // responses rejected and NACKed
	Updates       uint64 // Updates given to the Handler
	// BytesReceived sums the serialized size of every resource received.
	BytesReceived uint64
	// Resources is the number of resources held, by type URL.
	Resources map[string]int
	// Connected reports that a stream is open (see Client.Connected).
	Connected bool
	// Complete reports that the current stream's state is complete.
	Complete bool
	// LastError is the error that ended the latest stream, or the reason of
	// the latest NACK, whichever came last; LastErrorAt is when.
	LastError   error
	LastErrorAt time.Time
}

// counters are the live values behind Stats. The atomic fields are written by
// the Run goroutine and read by any; mu guards the rest.
type counters struct {
	streamsOpened, responses, acks, nacks, updates, bytes atomic.Uint64
	connected, complete                                   atomic.Bool

	mu          sync.Mutex
	resources   map[string]int
	lastErr     error
	lastErrorAt time.Time
}

func (c *counters) setError(err error, at time.Time) {
	c.mu.Lock()
	c.lastErr, c.lastErrorAt = err, at
	c.mu.Unlock()
}

func (c *counters) setSizes(resources map[string]int) {
	c.mu.Lock()
	c.resources = resources
	c.mu.Unlock()
}

func (c *counters) snapshot() Stats {
	s := Stats{
		StreamsOpened: c.streamsOpened.Load(),
		Responses:     c.responses.Load(),
		ACKs:          c.acks.Load(),
		NACKs:         c.nacks.Load(),
		Updates:       c.updates.Load(),
		BytesReceived: c.bytes.Load(),
		Connected:     c.connected.Load(),
		Complete:      c.complete.Load(),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.Resources = maps.Clone(c.resources)
	if s.Resources == nil {
		s.Resources = map[string]int{}
	}
	s.LastError, s.LastErrorAt = c.lastErr, c.lastErrorAt
	return s
}
