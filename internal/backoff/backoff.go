package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Options bound the delays. Zero fields take the defaults.
type Options struct {
	// Initial is the delay after the first failure (default 100 ms).
	Initial time.Duration
	// Max caps the delay (default 30 s).
	Max time.Duration
}

// Defaults of Options.
const (
	DefaultInitial = 100 * time.Millisecond
	DefaultMax     = 30 * time.Second
)

// WithDefaults fills zero fields and keeps Max ≥ Initial.
func (o Options) WithDefaults() Options {
	if o.Initial <= 0 {
		o.Initial = DefaultInitial
	}
	if o.Max <= 0 {
		o.Max = DefaultMax
	}
	if o.Max < o.Initial {
		o.Max = o.Initial
	}
	return o
}

// Backoff yields the n-th consecutive delay drawn uniformly from [d/2, d]
// with d = min(Initial·2ⁿ, Max). Half the range is random so that many
// clients cut off by the same failure do not retry in lockstep; the other
// half keeps a floor under the delay. It is not safe for concurrent use.
type Backoff struct {
	opts    Options
	attempt int
}

// New returns a Backoff at its first attempt.
func New(opts Options) *Backoff { return &Backoff{opts: opts.WithDefaults()} }

// Next returns the delay before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	d := b.opts.Initial
	for i := 0; i < b.attempt && d < b.opts.Max; i++ {
		d *= 2
	}
	d = min(d, b.opts.Max)
	b.attempt++
	half := d / 2
	return half + rand.N(d-half+1)
}

// Reset starts the sequence over, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Wait sleeps for Next(). It returns false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
