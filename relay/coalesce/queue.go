package coalesce

import (
	"context"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultWindow   = 100 * time.Millisecond
	DefaultMaxDelay = time.Second
)

// Options tune a Queue.
type Options struct {
	// Window is the quiet period: Next returns once no key was marked for
	// this long. Default DefaultWindow (100 ms).
	Window time.Duration
	// MaxDelay bounds how long the oldest pending key waits, however often
	// keys keep being marked. Default DefaultMaxDelay (1 s).
	MaxDelay time.Duration
}

// Queue is a set of dirty keys with timing. Mark and Len may be called from
// any goroutine; Next from one consumer goroutine at a time.
type Queue[K comparable] struct {
	window, maxDelay time.Duration

	mu      sync.Mutex
	pending map[K]struct{}
	first   time.Time // first Mark since the set was last emptied
	last    time.Time // latest Mark

	// wake has room for one token. Mark sends one when the set goes from
	// empty to non-empty, the only time a waiting Next has no timer running.
	wake chan struct{}
}

// New returns an empty Queue.
func New[K comparable](opts Options) *Queue[K] {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	return &Queue[K]{
		window:   opts.Window,
		maxDelay: opts.MaxDelay,
		pending:  make(map[K]struct{}),
		wake:     make(chan struct{}, 1),
	}
}

// Mark adds k to the set (a no-op for the set's size if it is already
// there) and restarts the quiet period. It never blocks.
func (q *Queue[K]) Mark(k K) {
	q.mu.Lock()
	q.markLocked(k)
	q.mu.Unlock()
}

// MarkAll marks every key of ks, under one lock.
func (q *Queue[K]) MarkAll(ks []K) {
	q.mu.Lock()
	for _, k := range ks {
		q.markLocked(k)
	}
	q.mu.Unlock()
}

func (q *Queue[K]) markLocked(k K) {
	now := time.Now()
	if len(q.pending) == 0 {
		q.first = now
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	q.pending[k] = struct{}{}
	q.last = now
}

// Len is the number of pending keys.
func (q *Queue[K]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Next blocks until at least one key is pending and either Window passed
// since the latest Mark or MaxDelay passed since the oldest pending Mark. It
// returns the pending keys, in no particular order, and empties the set.
// When ctx is done it returns ctx.Err() and leaves the keys pending.
func (q *Queue[K]) Next(ctx context.Context) ([]K, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		q.mu.Lock()
		var timeout <-chan time.Time
		if len(q.pending) > 0 {
			due := q.last.Add(q.window)
			if d := q.first.Add(q.maxDelay); d.Before(due) {
				due = d
			}
			wait := time.Until(due)
			if wait <= 0 {
				keys := make([]K, 0, len(q.pending))
				for k := range q.pending {
					keys = append(keys, k)
				}
				clear(q.pending)
				q.mu.Unlock()
				return keys, nil
			}
			// A Mark while we sleep only moves the quiet period's end
			// later, never earlier: wake up at due and look again.
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timeout = timer.C
		}
		q.mu.Unlock()

		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
		case <-q.wake:
		}
	}
}
