package etcdsource

import "sync/atomic"

// Stats are the Source's counters since New, for metrics and tests.
type Stats struct {
	// Services is the number of services registered with Watch.
	Services int
	// Deferred is the number of watched services whose removal waits for
	// a synced marker of the current generation.
	Deferred int
	// WatchesOpen is the number of etcd watches open: one per watched
	// service plus two (generation and synced/), all on one gRPC stream.
	WatchesOpen int64
	// Lists counts reads of a service's prefix (one read-only Txn each);
	// Relists counts those after a service's first (compaction, marker,
	// generation change, removal check).
	Lists, Relists int64
	// Gets counts reads of vips/<ip> that reached etcd; NegativeHits counts
	// Resolve calls answered by the cache of unknown VIPs.
	Gets, NegativeHits int64
	// Probes counts reads of generation made to detect a rebuilt etcd.
	Probes int64
	// WatchEvents counts etcd events applied from service watches.
	WatchEvents int64
	// Events counts events queued for the consumer; Coalesced counts those
	// that replaced a pending event of the same service; Delivered counts
	// those returned by Next.
	Events, Coalesced, Delivered int64
	// Compactions counts service watches that failed with ErrCompacted.
	Compactions int64
	// DeferredDeletes counts removals deferred for lack of a synced marker.
	DeferredDeletes int64
	// GenerationChanges counts changed generations and rebuilt etcds seen.
	GenerationChanges int64
}

// counters are the atomic counters behind Stats.
type counters struct {
	watchesOpen, lists, relists, gets, negativeHits, probes atomic.Int64
	watchEvents, events, coalesced, delivered, compactions  atomic.Int64
	deferredDeletes, generationChanges                      atomic.Int64
}

// Stats returns a snapshot of the Source's counters.
func (s *Source) Stats() Stats {
	st := Stats{
		WatchesOpen:       s.stats.watchesOpen.Load(),
		Lists:             s.stats.lists.Load(),
		Relists:           s.stats.relists.Load(),
		Gets:              s.stats.gets.Load(),
		NegativeHits:      s.stats.negativeHits.Load(),
		Probes:            s.stats.probes.Load(),
		WatchEvents:       s.stats.watchEvents.Load(),
		Events:            s.stats.events.Load(),
		Coalesced:         s.stats.coalesced.Load(),
		Delivered:         s.stats.delivered.Load(),
		Compactions:       s.stats.compactions.Load(),
		DeferredDeletes:   s.stats.deferredDeletes.Load(),
		GenerationChanges: s.stats.generationChanges.Load(),
	}
	s.mu.Lock()
	st.Services = len(s.watches)
	for _, w := range s.watches {
		if w.deferred {
			st.Deferred++
		}
	}
	s.mu.Unlock()
	return st
}
