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
	DefaultPack     = 2 * time.Millisecond
)

// Options tune a Queue.
type Options struct {
	// Window is the shortest time between two releases of one key: a key
	// marked again within Window of its last release waits for the end of
	// that Window (the trailing edge), however often it is marked
	// meanwhile. Default DefaultWindow (100 ms).
	Window time.Duration
	// MaxDelay bounds how long a pending key waits after it was marked.
	// It only matters when shorter than Window + Pack, and then wins over
	// Window. Default DefaultMaxDelay (1 s).
	MaxDelay time.Duration
	// Pack is how long a key marked after a quiet period (the leading
	// edge) waits for others, so that keys marked within a few
	// milliseconds of each other are released together. Default
	// DefaultPack (2 ms); negative: no wait.
	Pack time.Duration
}

// withDefaults fills in the zero fields of o.
func (o Options) withDefaults() Options {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	switch {
	case o.Pack == 0:
		o.Pack = DefaultPack
	case o.Pack < 0:
		o.Pack = 0
	}
	return o
}

// Queue is a set of dirty keys with timing. Mark and Len may be called from
// any goroutine; Next from one consumer goroutine at a time.
type Queue[K comparable] struct {
	opts Options

	mu sync.Mutex
	// pending holds the dirty keys and when each is due.
	pending map[K]due
	// released maps the keys released within the last Window to when.
	// Pruned by Next; bounded by the number of distinct keys.
	released map[K]time.Time
	// packUntil is when the current leading-edge batch is due: keys marked
	// after quiet before then join it.
	packUntil time.Time
	// earliest is the earliest due time of pending (zero when empty).
	earliest time.Time

	// wake has room for one token. Mark sends one when it makes earliest
	// earlier, the only time a waiting Next sleeps too long.
	wake chan struct{}
}

// New returns an empty Queue.
func New[K comparable](opts Options) *Queue[K] {
	return &Queue[K]{
		opts:     opts.withDefaults(),
		pending:  make(map[K]due),
		released: make(map[K]time.Time),
		wake:     make(chan struct{}, 1),
	}
}

// Mark adds k to the set (a no-op if it is already there). It never
// blocks.
func (q *Queue[K]) Mark(k K) {
	q.mu.Lock()
	q.markLocked(k, time.Now())
	q.mu.Unlock()
}

// MarkAll marks every key of ks, under one lock.
func (q *Queue[K]) MarkAll(ks []K) {
	q.mu.Lock()
	now := time.Now()
	for _, k := range ks {
		q.markLocked(k, now)
	}
	q.mu.Unlock()
}

func (q *Queue[K]) markLocked(k K, now time.Time) {
	if _, ok := q.pending[k]; ok {
		return // already due; latest-wins is the caller's
	}
	var d due
	if r, ok := q.released[k]; ok && now.Sub(r) < q.opts.Window {
		d.at = r.Add(q.opts.Window) // trailing edge
	} else {
		if !q.packUntil.After(now) {
			q.packUntil = now.Add(q.opts.Pack)
		}
		d = due{at: q.packUntil, leading: true}
	}
	if limit := now.Add(q.opts.MaxDelay); limit.Before(d.at) {
		d.at = limit
	}
	q.pending[k] = d
	if q.earliest.IsZero() || d.at.Before(q.earliest) {
		q.earliest = d.at
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// Unwritten tells the queue that the latest release of each of ks wrote
// nothing (its content had not changed), so it does not count against the
// Window: the key's next Mark is a leading edge, and a pending one waiting
// for the trailing edge is due at once. It never blocks.
func (q *Queue[K]) Unwritten(ks ...K) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	for _, k := range ks {
		delete(q.released, k)
		if d, ok := q.pending[k]; ok && !d.leading {
			delete(q.pending, k)
			q.markLocked(k, now)
		}
	}
}

// Len is the number of pending keys.
func (q *Queue[K]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Next blocks until at least one pending key is due and returns the due
// keys, in no particular order, removing them from the set. A key marked
// after a quiet period is due after Pack (the leading edge); a key marked
// again within Window of its last release is due at the end of that
// Window (the trailing edge), so each key is released at most once per
// Window. When ctx is done it returns ctx.Err() and leaves the keys
// pending.
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
			now := time.Now()
			if wait := q.earliest.Sub(now); wait > 0 {
				// A Mark that makes earliest earlier sends a wake.
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				timeout = timer.C
			} else {
				keys := q.releaseLocked(now)
				q.mu.Unlock()
				return keys, nil
			}
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

// due is when a pending key is due; leading says it was not released
// within the Window before it was marked, so it may go early.
type due struct {
	at      time.Time
	leading bool
}

// releaseLocked removes and returns the keys due at now, with every
// leading-edge key (releasing one early cannot write it twice in a
// Window, and packs the batch), records their release and forgets the
// releases older than Window.
func (q *Queue[K]) releaseLocked(now time.Time) []K {
	for k, r := range q.released {
		if now.Sub(r) >= q.opts.Window {
			delete(q.released, k)
		}
	}
	var keys []K
	q.earliest = time.Time{}
	for k, d := range q.pending {
		if d.at.After(now) && !d.leading {
			if q.earliest.IsZero() || d.at.Before(q.earliest) {
				q.earliest = d.at
			}
			continue
		}
		keys = append(keys, k)
		delete(q.pending, k)
		q.released[k] = now
	}
	return keys
}
