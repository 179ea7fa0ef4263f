package sotw

import (
	"math/rand/v2"
	"time"
)

// Default backoff between two streams.
const (
	DefaultBackoffInitial = 100 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
)

// BackoffOptions bound the delay before reopening a stream that ended.
type BackoffOptions struct {
	// Initial is the delay after the first failure. Default
	// DefaultBackoffInitial (100 ms).
	Initial time.Duration
	// Max caps the delay. Default DefaultBackoffMax (30 s).
	Max time.Duration
}

func (o BackoffOptions) withDefaults() BackoffOptions {
	if o.Initial <= 0 {
		o.Initial = DefaultBackoffInitial
	}
	if o.Max <= 0 {
		o.Max = DefaultBackoffMax
	}
	if o.Max < o.Initial {
		o.Max = o.Initial
	}
	return o
}

// backoff is a jittered exponential backoff: the n-th consecutive delay is
// drawn uniformly from [d/2, d] where d = min(Initial·2ⁿ, Max). Half the
// range is random so that relay replicas cut off by the same Istiod restart
// do not reconnect in lockstep; the other half keeps a floor under the delay.
// It is not safe for concurrent use.
type backoff struct {
	opts    BackoffOptions
	attempt int
}

func newBackoff(opts BackoffOptions) *backoff {
	return &backoff{opts: opts.withDefaults()}
}

// next returns the delay before the next attempt and counts the attempt.
func (b *backoff) next() time.Duration {
	d := b.opts.Initial
	for i := 0; i < b.attempt && d < b.opts.Max; i++ {
		d *= 2
	}
	d = min(d, b.opts.Max)
	b.attempt++
	half := d / 2
	return half + rand.N(d-half+1)
}

// reset starts the sequence over, after a stream that worked.
func (b *backoff) reset() {
	b.attempt = 0
}
