package etcdsource

import (
	"context"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
)

// Event is the latest known state of one watched service.
type Event struct {
	Service keyspace.Service
	// State is the complete service, or nil when the service is gone
	// (deleted upstream, confirmed by a synced marker of the current
	// generation). State is shared with the Source: treat it as read-only.
	State *model.Service
	// Revision is the etcd revision the state reflects.
	Revision int64
	// Invalid: the service's values in etcd are invalid (counted and logged
	// by the Source) and no state of it was queued before. State is nil,
	// and this is no removal: the consumer keeps what it installed and may
	// stop waiting for the service.
	Invalid bool
}

// queue holds at most one pending event per service, in the order the
// services first became pending. It is guarded by Source.mu.
type queue struct {
	pending map[keyspace.Service]Event
	order   []keyspace.Service // may hold services already taken or dropped
	ready   chan struct{}      // capacity 1: something was put
}

func newQueue() queue {
	return queue{pending: map[keyspace.Service]Event{}, ready: make(chan struct{}, 1)}
}

// put queues ev, replacing a pending event of the same service. It reports
// whether it replaced one.
func (q *queue) put(ev Event) (replaced bool) {
	_, replaced = q.pending[ev.Service]
	q.pending[ev.Service] = ev
	if !replaced {
		q.order = append(q.order, ev.Service)
	}
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return replaced
}

// drop forgets the pending event of svc, if any.
func (q *queue) drop(svc keyspace.Service) { delete(q.pending, svc) }

// take removes and returns up to max pending events (all when max <= 0).
func (q *queue) take(max int) []Event {
	var out []Event
	i := 0
	for ; i < len(q.order) && (max <= 0 || len(out) < max); i++ {
		ev, ok := q.pending[q.order[i]]
		if !ok {
			continue
		}
		delete(q.pending, q.order[i])
		out = append(out, ev)
	}
	q.order = q.order[i:]
	if len(q.order) == 0 {
		q.order = nil // let the backing array go
	}
	return out
}

// Next blocks until at least one event is pending or ctx is done, and returns
// up to max pending events (all of them when max <= 0), oldest service first.
// A pending event is returned even when ctx is already done, so Next with a
// cancelled context polls. Events are latest-wins per service: a service that
// changed several times since the last call appears once, with its latest
// state. Next is meant for one consumer goroutine.
func (s *Source) Next(ctx context.Context, max int) ([]Event, error) {
	for {
		if evs := s.Take(max); len(evs) > 0 {
			return evs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.queue.ready:
		}
	}
}

// Take returns up to max pending events (all of them when max <= 0),
// oldest service first, without waiting: none when none is pending. A
// consumer that waits on Ready calls Take after each receive (and before
// its first wait).
func (s *Source) Take(max int) []Event {
	s.mu.Lock()
	evs := s.queue.take(max)
	more := len(s.queue.pending) > 0
	s.mu.Unlock()
	if more {
		s.kickQueue()
	}
	if len(evs) > 0 {
		s.stats.delivered.Add(float64(len(evs)))
	}
	return evs
}

// Queued returns the number of services with an event waiting for Take
// or Next.
func (s *Source) Queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue.pending)
}

// Ready returns a channel that receives after events were queued: the
// signal for a consumer that drains them with Take in a loop of its own.
// One receive may stand for many events, and may come when Take finds none
// (they were taken first); a consumer of Ready must not also use Next.
func (s *Source) Ready() <-chan struct{} { return s.queue.ready }

func (s *Source) kickQueue() {
	select {
	case s.queue.ready <- struct{}{}:
	default:
	}
}
